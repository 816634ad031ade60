// shared/: the protocol, configuration, clock, NATS and KV helpers, errors and logging that statecharts'
// services are built from. Named exports only; values and types kept apart.
export * from "./protocol";
export { systemClock, ManualClock } from "./clock";
export { defaultConfig, defaultTimings, parseConfig, parseTimings, loadConfigFile } from "./config";
export { computeUnits, domainOf, domainProblem, placeNode, endpointOwners } from "./domains";
export {
  ErrorCode,
  RavenError,
  ConfigError,
  TopologyError,
  MalformedMessageError,
  UnknownVersionError,
  UnknownTypeError,
  OversizedMessageError,
  InvalidMessageError,
  InvalidSubjectTokenError,
  MeshUnavailableError,
  CasConflictError,
  NotLeaderError,
  RemoteError,
  NetnsError,
  PkiError,
  TunnelError,
  MissingDependencyError,
  errorToWire,
  errorFromWire,
  assertNever,
  describeError,
} from "./errors";
export {
  GATEWAY_API_VERSION,
  LABEL_NODEPOOL,
  LABEL_GATEWAY,
  LABEL_SOLO,
  EndpointType,
  ENDPOINT_TYPES,
  ExposeType,
  DEFAULT_PORT,
  emptyStatus,
  replicasOf,
  isSolo,
  gatewayKey,
  soloKey,
  keyOfGateway,
  soloGateway,
  parseGatewayManifest,
  parseGatewayRecord,
} from "./gateway";
export { applyGateway, listGateways } from "./gateway-store";
export { casPut, readJson, readAll } from "./kv";
export { createLogger, silentLogger } from "./log";
export { Counters, counters } from "./metrics";
export { Buckets, JETSTREAM_DOMAIN, connectDaemon, connectOnce, openBuckets, bindBuckets } from "./nats";
export { ensurePki, loadPki, pkiFiles, domainToken, verifyDomainToken } from "./pki";
export { parseTopology, loadTopology, partitionOf, gatewayCandidates, isIPv4 } from "./topology";
export type { Clock, TimerHandle } from "./clock";
export type { RavenConfig, Timings } from "./config";
export type { NodeFacts, Unit, Partition, Placement } from "./domains";
export type { Endpoint, Gateway, GatewaySpec, GatewayStatus, NodeInfo } from "./gateway";
export type { ApplyResult } from "./gateway-store";
export type { Versioned } from "./kv";
export type { Logger } from "./log";
export type { HubBuckets, NatsConnection, KV } from "./nats";
export type { KeyPair, LoadedPki, PkiFiles } from "./pki";
export type { Topology } from "./topology";
