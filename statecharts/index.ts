export { electActive, sameEndpoints, shortfall } from "./election";
export { domainMachine, plan } from "./domain";
export { gatewayMachine, actingTypes, heldTypes } from "./gateway";
export { nodeMachine } from "./node";
export { coordinatorMachine } from "./coordinator";
export { backoffMs, errorMessage } from "./retry";
export type { ElectionInput } from "./election";
export type {
  Plan,
  DomainContext,
  DomainEvent,
  DomainEmitted,
  DomainInput,
  LoadOutput,
  WriteInput,
  WriteOutput,
} from "./domain";
export type { GatewayContext, GatewayEvent, GatewayEmitted, GatewayInput, GatewayRole } from "./gateway";
export type { NodeContext, NodeEvent, NodeInput, Registration } from "./node";
export type { CoordinatorContext, CoordinatorEvent, CoordinatorInput } from "./coordinator";
export { proxyLinkMachine, wantsDials } from "./proxy-link";
export { proxyEngineMachine } from "./proxy-engine";
export type { ProxyEngineContext, ProxyEngineEvent, ProxySide } from "./proxy-engine";
export type { ProxyLinkContext, ProxyLinkEvent, ProxyLinkEmitted, ProxyLinkInput, ProxyLinkState } from "./proxy-link";
export { l3TunnelMachine, l3TunnelView, isTunnelUsable } from "./l3-tunnel";
export type {
  L3TunnelContext,
  L3TunnelEvent,
  L3TunnelEmitted,
  L3TunnelInput,
  L3TunnelState,
  L3TunnelView,
} from "./l3-tunnel";
