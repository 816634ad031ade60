// lib/vxlan: tunnel mode inside a domain: the pure route computation (routes.ts: the VXLAN device toward the
// domain's active gateway, the routes to the other domains' pod CIDRs, the MTUs) and the route driver that
// applies it over rtnetlink. Named exports only.
export {
  computeRoutes,
  checkPodCidrOverlap,
  vxlanAddress,
  vxlanMac,
  RouteRole,
  VXLAN_OVERHEAD_BYTES,
  DEFAULT_VXLAN,
  RAVEN_ROUTE_PROTO,
} from "./routes";
export type {
  RouteInput,
  RouteDesired,
  RouteEntry,
  VxlanDesired,
  VxlanPeer,
  DomainNodeFacts,
  DomainPodCidrs,
} from "./routes";
export { RouteDriver } from "./route-driver";
export type { RouteDriverOptions } from "./route-driver";
