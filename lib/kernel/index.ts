// lib/kernel: a namespace's kernel state without a process per read: rtnetlink from the native addon
// (links, addresses, routes, neighbours, FDB, sysctls; netlink.ts, rtnetlink.ts), the KernelNet interface over
// it, a FakeNet for tests, and `ip netns exec` argv for the daemons. Named exports only.
export { NetlinkNet, linkNamed } from "./kernel-net";
export type { KernelNet, Addr, Link, Neighbour, Route, VxlanSpec, LinkChange, RouteSpec } from "./kernel-net";
export { FakeNet } from "./fake-net";
export { NetlinkSocket, NetnsFile, Pinger, watchNetlink } from "./netlink";
export { NUD_PERMANENT } from "./rtnetlink";
export { execInNs } from "./exec";
