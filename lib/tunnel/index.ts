// lib/tunnel: tunnel mode's plan, from the fleet's records to what the drivers apply: the domains taking part,
// each active gateway's VPN peers (../vpn) and each node's route input (../vxlan). Named exports only.
export { tunnelDomains, vpnPeersOf, routeInputOf, podCidrsOf, peerNameOf } from "./facts";
export type { TunnelDomain, TunnelNode, TunnelEndpoint, PeerPlan } from "./facts";
