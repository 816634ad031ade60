// Wire message types. Every message travels as a msgpack array `[PROTOCOL_VERSION, type, ...fields]`, the
// body's top-level fields in the order they are declared below (codec.ts): the order IS the layout, so a
// field is only ever appended, never moved. Nested values are msgpack maps.
// Wire types are kept apart from domain types (shared/gateway.ts): they are what peers agree on, validated
// field by field on receipt.
//
//   node.register    node -> coordinator, request. Facts of the node. Reply: node.registered | error.
//   node.registered  coordinator -> node. The Gateway (or solo role) its domain belongs to.
//   node.hb          node heartbeat, every nodeHeartbeatMs. `seq` grows per process start.
//   gw.hb            gateway candidate heartbeat, every gatewayHeartbeatMs (gatewayStandbyHeartbeatMs while
//                    standby and not named) and at once on a role change; `everyMs` says when the next is due.
//                    `active` lists the endpoint types it is *acting* active for right now (lease valid, term
//                    current) — what an independent observer counts for split brain. `datapathOk` is its own
//                    data-path health verdict; `leaseLeftMs` how much longer it may act without a new
//                    acknowledgement, so an observer can check that no two leases ever overlap.
//   assignment       coordinator -> a domain's candidates. The domain's Gateway term and active endpoints;
//                    `acks` name the newest heartbeat seq received from candidates, from which each active
//                    computes its lease (sentAt of that heartbeat + leaseMs). Published to the whole domain on
//                    every change and every resyncMs; as the acknowledgement of one active's heartbeat, to that
//                    candidate alone (its standby peers need not wake ten times a second for it).
//   error            reply to a request that failed: `{ code, message }`.
//   status.request / status.reply   CLI <-> active coordinator.
//
// Data-plane handshake (proxy channels). These travel not on the mesh but as length-prefixed frames at the
// start of a TLS connection the edge gateway dials out to the cloud gateway (services/gateway-actor/proxy);
// after `chan.opened` the connection carries the channel's bytes, raw.
//   chan.hello       edge -> cloud, first frame: who dials (domain, node, Gateway, term) and the domain's
//                    token, an HMAC of the fleet secret that only this domain's gateways hold.
//   chan.welcome     cloud -> edge: the connection is accepted as a spare channel of that domain.
//   chan.open        cloud -> edge: make this spare a channel to `node:port`, under the domain's `term` as the
//                    cloud knows it. The edge refuses a term older than its own (fencing) with an error.
//   chan.sealed      cloud -> edge: as chan.open, but after chan.opened the channel's bytes travel outside TLS as
//                    sealed frames (AES-256-GCM, keys exported from this TLS session for the channel id; see
//                    native/frames.c), relayed natively on both gateways. The edge stops reading TLS as it sends
//                    chan.opened and sends no frame before the cloud's first.
//   chan.opened      edge -> cloud: the target answered; raw bytes (or sealed frames) follow in both directions.
//   gw.proxy         a gateway's proxy, every second while it runs: its peer links (ProxyLinkActor state and
//                    spare connections) and channel totals, for the statechart debugger and operators.
//   gw.tunnel        a gateway candidate's tunnel mode, every second and on every change: its driver, whether
//                    it is the domain's active tunnel endpoint, and per peer domain the TunnelActor's state,
//                    the peer gateway and term it is fenced to, latency through the tunnel and SA bytes.
//   inspect.viewer   a statechart viewer's presence, every ~1 s; actor processes publish inspection batches
//                    only while some viewer announced itself within `ttlMs`.
//   inspect.batch    an actor process's inspection entries: one per event an actor processed (hot events
//                    that changed neither state nor term are left out), or the current state of every
//                    actor (`sync`, on a new viewer). `dropped` counts entries lost to the bounded buffer
//                    since the previous batch; `seq` grows per process start.
import { isDomainName, isObjectName } from "./subjects";
import { arr, bool, int, literal, nullable, obj, opt, record, str, type Infer, type ObjSchema } from "./schema";

const domain = str({ check: isDomainName, what: "a domain name (DNS label)" });
const name = str({ check: isObjectName, what: "a DNS subdomain name", max: 253 });
const ms = int(0);
const seq = int(0);
const endpointType = literal("proxy", "tunnel");

const nodeRegister = obj({
  node: name,
  domain,
  labels: record(str({ max: 253 }), 64),
  internalIP: str({ max: 64 }),
  podCIDR: opt(str({ max: 64 })),
  startedAt: ms,
});

const nodeRegistered = obj({
  node: name,
  domain,
  /** The Gateway serving the node's domain, or null when the node is solo (its own gateway). */
  gateway: nullable(name),
  solo: bool,
});

const nodeHeartbeat = obj({ node: name, domain, seq, ready: bool, sentAt: ms });

const gatewayHeartbeat = obj({
  node: name,
  domain,
  /** The Gateway record this candidate serves. */
  gateway: name,
  seq,
  sentAt: ms,
  /** The highest term this candidate has seen. */
  term: int(0),
  active: arr(endpointType, 2),
  /** How long it may still act active without a new acknowledgement (0 when not active). */
  leaseLeftMs: int(0, 60_000),
  draining: bool,
  datapathOk: bool,
  detail: opt(str({ max: 256 })),
  /** When its next heartbeat is due, in ms (absent: the coordinator's gatewayHeartbeatMs). */
  everyMs: opt(int(1, 600_000)),
});

const endpointRef = obj({ nodeName: name, type: endpointType });
const ack = obj({ nodeName: name, seq });

const assignment = obj({
  domain,
  /** The Gateway record's name; for a solo node, the node's own name. */
  gateway: name,
  term: int(0),
  active: arr(endpointRef, 64),
  acks: arr(ack, 64),
  leaseMs: int(1, 60_000),
  coordinator: str({ max: 128 }),
  issuedAt: ms,
});

const error = obj({ code: str({ max: 64 }), message: str({ max: 4096 }) });

const statusRequest = obj({ domain: opt(domain) });

const candidateStatus = obj({
  node: name,
  types: arr(endpointType, 2),
  healthy: bool,
  draining: bool,
  datapathOk: bool,
  actingActive: arr(endpointType, 2),
  lastHeartbeatAgeMs: nullable(ms),
});
const nodeStatus = obj({
  node: name,
  internalIP: str({ max: 64 }),
  ready: bool,
  lastHeartbeatAgeMs: nullable(ms),
});
const domainStatus = obj({
  domain,
  gateway: name,
  solo: bool,
  term: int(0),
  replicas: obj({ proxy: int(0, 64), tunnel: int(0, 64) }),
  active: arr(endpointRef, 64),
  candidates: arr(candidateStatus, 256),
  nodes: arr(nodeStatus, 100_000),
  problem: opt(str({ max: 512 })),
  /** Why tunnel mode refuses the domain (overlapping pod CIDRs). Appended field. */
  tunnelProblem: opt(str({ max: 512 })),
  /**
   * How often the coordinator raised this unit's term in the last minute (flapping); counts only its own
   * raises since it became active. Appended field: absent from an older coordinator's reply.
   */
  termChangesLastMinute: opt(int(0)),
});
const statusReply = obj({
  coordinator: str({ max: 128 }),
  activeSince: ms,
  domains: arr(domainStatus, 100_000),
  truncated: bool,
});

const chanHello = obj({ domain, node: name, gateway: name, term: int(0), token: str({ max: 128 }) });
const chanWelcome = obj({ node: name });
const chanOpen = obj({ id: str({ max: 64 }), node: name, port: int(1, 65_535), term: int(0) });
const chanOpened = obj({ id: str({ max: 64 }) });
// A proxy link (spare connections to one peer). Protocol 1 names the list `tunnels`; it is not tunnel mode.
const proxyLink = obj({ peer: name, state: str({ max: 32 }), spares: int(0) });
const gatewayProxy = obj({
  node: name,
  domain,
  side: literal("cloud", "edge"),
  tunnels: arr(proxyLink, 1024),
  channelsOpen: int(0),
  channelsOpened: int(0),
  bytesIn: int(0),
  bytesOut: int(0),
  errors: int(0),
  sentAt: ms,
});
const l3Tunnel = obj({
  peer: domain,
  peerNode: nullable(name),
  peerTerm: int(0),
  state: str({ max: 32 }),
  /** Round trip through the tunnel, microseconds; null until a probe answered. */
  latencyUs: nullable(int(0)),
  bytesIn: nullable(int(0)),
  bytesOut: nullable(int(0)),
  error: nullable(str({ max: 512 })),
  since: ms,
});
const gatewayTunnel = obj({
  node: name,
  domain,
  driver: str({ max: 32 }),
  term: int(0),
  active: bool,
  tunnels: arr(l3Tunnel, 4096),
  error: nullable(str({ max: 512 })),
  sentAt: ms,
});
const inspectViewer = obj({ viewer: str({ max: 128 }), sentAt: ms, ttlMs: int(100, 60_000) });

const inspectEntry = obj({
  /** The actor: `<kind>/<name>`, e.g. gateway/a-gw-1, domain/gw-a, coordinator/coordinator-1-…. */
  actor: str({ max: 256 }),
  /** The machine's id (gateway, domain, node, coordinator): which statechart to draw. */
  machine: str({ max: 64 }),
  /** Wall-clock ms when the actor processed the event. */
  at: ms,
  /** The event's type (`sync` for a state report without an event). */
  event: str({ max: 128 }),
  /** The state value after the event (JSON for a nested value). */
  state: str({ max: 256 }),
  changed: bool,
  term: nullable(int(0)),
  /** The event, JSON, cut at 256 characters. */
  payload: opt(str({ max: 256 })),
  /** The context after the event, JSON, cut at 1024 characters. */
  context: opt(str({ max: 1024 })),
});

const inspectBatch = obj({
  source: str({ max: 256 }),
  domain: opt(domain),
  seq,
  dropped: int(0),
  sync: bool,
  entries: arr(inspectEntry, 128),
});

export const messageSchemas = {
  "node.register": nodeRegister,
  "node.registered": nodeRegistered,
  "node.hb": nodeHeartbeat,
  "gw.hb": gatewayHeartbeat,
  assignment,
  error,
  "status.request": statusRequest,
  "status.reply": statusReply,
  "chan.hello": chanHello,
  "chan.welcome": chanWelcome,
  "chan.open": chanOpen,
  "chan.sealed": chanOpen,
  "chan.opened": chanOpened,
  "gw.proxy": gatewayProxy,
  "gw.tunnel": gatewayTunnel,
  "inspect.viewer": inspectViewer,
  "inspect.batch": inspectBatch,
} as const satisfies Record<string, ObjSchema<unknown>>;

export type MessageType = keyof typeof messageSchemas;
export type MessageBody<T extends MessageType> = Infer<(typeof messageSchemas)[T]>;
/** A decoded message: a discriminated union keyed on `type`. */
export type Message = { [T in MessageType]: { type: T; body: MessageBody<T> } }[MessageType];

export type NodeRegister = MessageBody<"node.register">;
export type NodeRegistered = MessageBody<"node.registered">;
export type NodeHeartbeat = MessageBody<"node.hb">;
export type GatewayHeartbeat = MessageBody<"gw.hb">;
export type Assignment = MessageBody<"assignment">;
export type WireError = MessageBody<"error">;
export type StatusRequest = MessageBody<"status.request">;
export type StatusReply = MessageBody<"status.reply">;
export type DomainStatus = StatusReply["domains"][number];
export type CandidateStatus = DomainStatus["candidates"][number];
export type EndpointRef = Assignment["active"][number];
export type ChanHello = MessageBody<"chan.hello">;
export type ChanOpen = MessageBody<"chan.open">;
export type GatewayProxy = MessageBody<"gw.proxy">;
export type GatewayTunnel = MessageBody<"gw.tunnel">;
export type L3TunnelReport = GatewayTunnel["tunnels"][number];
export type InspectViewer = MessageBody<"inspect.viewer">;
export type InspectBatch = MessageBody<"inspect.batch">;
export type InspectEntry = InspectBatch["entries"][number];
