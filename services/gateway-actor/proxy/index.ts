export { ProxyEngine, defaultProxyConfig } from "./engine";
export { ProxyHost } from "./host";
export { CloudProxy } from "./cloud";
export { EdgeProxy, dialTcp } from "./edge";
export { Directory } from "./directory";
export { ProxyFrontDoor, NameRoutedListener, httpStatusOf, parseTarget } from "./front";
export { sniff } from "./sniff";
export type { ProxyConfig, ProxyEngineOptions } from "./engine";
export type { NodeRoute, ProxyPeer } from "./directory";
