// services/tunnel: tunnel mode's data-path drivers — the VPN between gateways (strongSwan, a fake) behind one
// desired-state interface, and the VXLAN/route driver inside each domain, with the pure route computation.
export { PeerState, initiates, validateVpnDesired } from "./vpn-driver";
export type { VpnPeer, VpnDesired, VpnPeerStatus, VpnStatus, VpnDriver } from "./vpn-driver";
export { FakeVpnDriver } from "./fake-vpn";
export {
  StrongSwanDriver,
  STRONGSWAN_PACKAGES,
  DEFAULT_CHARON,
  VICI_PLUGIN,
  kernelHasEsp,
  checkStrongSwanInstalled,
} from "./strongswan";
export { MIN_PSK_BYTES, ensurePskFile, readPsk } from "./psk";
export type { StrongSwanOptions, EspMode, CharonLauncher } from "./strongswan";
export { renderStrongswanConf, connectionMessage, sharedKeyMessage, sharedKeyId, ikeSasOf, uncoveredSubnets, IKE_PROPOSALS, ESP_PROPOSALS } from "./strongswan-conf";
export type { IkeSaInfo, ChildSaInfo, CharonConfInput } from "./strongswan-conf";
export { viciCall, ViciClient, encodeMessage, decodeMessage, encodePacket, checkSuccess, Packet, ViciError } from "./vici";
export type { ViciSection, ViciValue, ViciMessage, ViciPacket, ViciReply, ViciCallOptions } from "./vici";
export {
  computeRoutes,
  checkPodCidrOverlap,
  vxlanAddress,
  vxlanMac,
  RouteRole,
  VXLAN_OVERHEAD_BYTES,
  IPSEC_OVERHEAD_BYTES,
  WIREGUARD_OVERHEAD_BYTES,
  DEFAULT_VXLAN,
  RAVEN_ROUTE_PROTO,
} from "./routes";
export type { RouteInput, RouteDesired, RouteEntry, VxlanDesired, VxlanPeer, DomainNodeFacts, DomainPodCidrs } from "./routes";
export { podCidrProblems } from "../../shared/pod-cidrs";
export { tunnelDomains, vpnPeersOf, routeInputOf, podCidrsOf, peerNameOf } from "./facts";
export type { TunnelDomain, TunnelNode, TunnelEndpoint, PeerPlan } from "./facts";
export { RouteDriver } from "./route-driver";
export type { RouteDriverOptions } from "./route-driver";
export { ensureAnchors, anchorOf, ANCHOR_LABEL } from "./anchors";
export { NetlinkNet, linkNamed } from "./kernel-net";
export type { KernelNet, Addr, Link, Neighbour, Route, VxlanSpec, LinkChange, RouteSpec } from "./kernel-net";
export { FakeNet } from "./fake-net";
export { NetlinkSocket, NetnsFile, Pinger, watchNetlink } from "./netlink";
export { parseCidr, cidrsOverlap, cidrContains } from "../../shared/cidr";
export type { Cidr } from "../../shared/cidr";
export { TUNNEL_DRIVERS, TunnelDriverName, WIREGUARD_DEVICE, tunnelDriverFlag, underlayMtuFlag, vpnOverheadFor } from "./drivers";
export { WireGuardDriver, WIREGUARD_PACKAGES, DEFAULT_WIREGUARD_GO, DEFAULT_WIREGUARD_PORT, checkWireGuardInstalled } from "./wireguard";
export type { WireGuardOptions } from "./wireguard";
export { wireguardKeyPair, wireguardPresharedKey, publicKeyOf, parseUapiGet, uapiSet, uapiDevice, uapiPeer, uapiRemovePeer, uapiErrno, planWireGuardPeers, diffWireGuardPeers, WIREGUARD_KEY_SALT, WIREGUARD_PSK_SALT, PERSISTENT_KEEPALIVE_SEC, HANDSHAKE_FRESH_SEC } from "./wireguard-conf";
export type { WireGuardKeyPair, WgDeviceDump, WgPeerDump, WgWantedPeer, WgPeerOp } from "./wireguard-conf";
