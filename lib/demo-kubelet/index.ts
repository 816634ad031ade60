// lib/demo-kubelet: the demo fleet's kubelet / node-exporter stand-in (HTTP, TLS, followed logs, WebSocket and
// SPDY upgrades), so the proxy has something real to reach on every node. Demo and test code only: a node
// actor loads it (dynamic import) only when started with --target-*-ports, as the fleet launcher does.
export { startTargetServer } from "./server";
export type { TargetServer, TargetServerOptions } from "./server";
