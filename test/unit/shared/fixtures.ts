// Realistic wire bodies for every message type, shared by the codec and fuzz tests. `Fixtures` is a mapped
// type over MessageType, so adding a message type without a fixture here is a type error.
import { Packr } from "msgpackr";
import { PROTOCOL_VERSION, messageSchemas, type MessageBody, type MessageType } from "../../../shared/protocol";

export type Fixtures = { [T in MessageType]: MessageBody<T> };

export const messageTypes = Object.keys(messageSchemas) as MessageType[];

const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00.000Z

/** Every field filled in, optional ones included. */
export const fullBodies: Fixtures = {
  "node.register": {
    node: "factory-a-node-1",
    domain: "factory-a",
    labels: { "apps.openyurt.io/nodepool": "factory-a", "raven.openyurt.io/gateway": "gw-factory-a" },
    internalIP: "192.168.1.13",
    podCIDR: "10.244.18.0/24",
    startedAt: T0,
  },
  "node.registered": { node: "factory-a-node-1", domain: "factory-a", gateway: "gw-factory-a", solo: false },
  "node.hb": { node: "factory-a-node-1", domain: "factory-a", seq: 42, ready: true, sentAt: T0 + 42_000 },
  "gw.hb": {
    node: "factory-a-gw-1",
    domain: "factory-a",
    gateway: "gw-factory-a",
    seq: 1_234,
    sentAt: T0 + 123_400,
    term: 3,
    active: ["proxy", "tunnel"],
    leaseLeftMs: 180,
    draining: false,
    datapathOk: true,
    detail: "tunnel up, 3 peers",
  },
  assignment: {
    domain: "factory-a",
    gateway: "gw-factory-a",
    term: 3,
    active: [
      { nodeName: "factory-a-gw-1", type: "proxy" },
      { nodeName: "factory-a-gw-1", type: "tunnel" },
    ],
    acks: [
      { nodeName: "factory-a-gw-1", seq: 1_234 },
      { nodeName: "factory-a-gw-2", seq: 877 },
    ],
    leaseMs: 250,
    coordinator: "coordinator-0",
    issuedAt: T0 + 123_410,
  },
  error: { code: "NOT_LEADER", message: "coordinator-1 is standby; the active coordinator is coordinator-0" },
  "status.request": { domain: "factory-a" },
  "status.reply": {
    coordinator: "coordinator-0",
    activeSince: T0,
    truncated: false,
    domains: [
      {
        domain: "factory-a",
        gateway: "gw-factory-a",
        solo: false,
        term: 3,
        replicas: { proxy: 1, tunnel: 1 },
        active: [{ nodeName: "factory-a-gw-1", type: "proxy" }],
        candidates: [
          {
            node: "factory-a-gw-1",
            types: ["proxy", "tunnel"],
            healthy: true,
            draining: false,
            datapathOk: true,
            actingActive: ["proxy"],
            lastHeartbeatAgeMs: 40,
          },
          {
            node: "factory-a-gw-2",
            types: ["proxy", "tunnel"],
            healthy: false,
            draining: false,
            datapathOk: true,
            actingActive: [],
            lastHeartbeatAgeMs: null,
          },
        ],
        nodes: [{ node: "factory-a-node-1", internalIP: "192.168.1.13", ready: true, lastHeartbeatAgeMs: 900 }],
        problem: "tunnel replica unfilled",
        termChangesLastMinute: 2,
      },
    ],
  },
  "chan.hello": {
    domain: "factory-a",
    node: "factory-a-gw-1",
    gateway: "gw-factory-a",
    term: 7,
    token: "9f".repeat(32),
  },
  "chan.welcome": { node: "cloud-gw-1" },
  "chan.open": { id: "c-1f", node: "factory-a-node-1", port: 10250, term: 7 },
  "chan.sealed": { id: "c-20", node: "factory-a-node-1", port: 10250, term: 7 },
  "chan.opened": { id: "c-1f" },
  "gw.proxy": {
    node: "factory-a-gw-1",
    domain: "factory-a",
    side: "edge",
    tunnels: [{ peer: "cloud-gw-1", state: "up", spares: 4 }],
    channelsOpen: 12,
    channelsOpened: 3_400,
    bytesIn: 1_073_741_824,
    bytesOut: 52_000,
    errors: 1,
    sentAt: T0,
  },
  "gw.tunnel": {
    node: "factory-a-gw-1",
    domain: "factory-a",
    driver: "strongswan",
    term: 7,
    active: true,
    tunnels: [
      {
        peer: "cloud",
        peerNode: "cloud-gw-1",
        peerTerm: 3,
        state: "up",
        latencyUs: 640,
        bytesIn: 1_048_576,
        bytesOut: 2_048,
        error: null,
        since: T0,
      },
      {
        peer: "shop-b",
        peerNode: null,
        peerTerm: 0,
        state: "backoff",
        latencyUs: null,
        bytesIn: null,
        bytesOut: null,
        error: "negotiation timed out after 5000 ms",
        since: T0,
      },
    ],
    error: null,
    sentAt: T0,
  },
  "inspect.viewer": { viewer: "ui-1234-ab12cd", sentAt: T0, ttlMs: 3_000 },
  "inspect.batch": {
    source: "gateway/factory-a-gw-1",
    domain: "factory-a",
    seq: 17,
    dropped: 2,
    sync: false,
    entries: [
      {
        actor: "gateway/factory-a-gw-1",
        machine: "gateway",
        at: T0,
        event: "ASSIGNMENT",
        state: "active",
        changed: true,
        term: 4,
        payload: '{"type":"ASSIGNMENT","gateway":"gw-factory-a","term":4}',
        context: '{"node":"factory-a-gw-1","term":4}',
      },
    ],
  },
};

/** Smallest valid bodies: optional fields left out, nullable ones null, lists empty. */
export const minimalBodies: Fixtures = {
  "node.register": { node: "kiosk-1", domain: "kiosk", labels: {}, internalIP: "192.168.1.11", startedAt: 0 },
  "node.registered": { node: "kiosk-1", domain: "kiosk", gateway: null, solo: true },
  "node.hb": { node: "kiosk-1", domain: "kiosk", seq: 0, ready: false, sentAt: 0 },
  "gw.hb": {
    node: "kiosk-1",
    domain: "kiosk",
    gateway: "kiosk-1",
    seq: 0,
    sentAt: 0,
    term: 0,
    active: [],
    leaseLeftMs: 0,
    draining: true,
    datapathOk: false,
  },
  assignment: {
    domain: "kiosk",
    gateway: "kiosk-1",
    term: 0,
    active: [],
    acks: [],
    leaseMs: 1,
    coordinator: "",
    issuedAt: 0,
  },
  error: { code: "", message: "" },
  "status.request": {},
  "status.reply": { coordinator: "c", activeSince: 0, domains: [], truncated: true },
  "chan.hello": { domain: "kiosk", node: "kiosk-1", gateway: "kiosk-1", term: 0, token: "" },
  "chan.welcome": { node: "c" },
  "chan.open": { id: "", node: "kiosk-1", port: 1, term: 0 },
  "chan.sealed": { id: "", node: "kiosk-1", port: 1, term: 0 },
  "chan.opened": { id: "" },
  "gw.proxy": {
    node: "c",
    domain: "cloud",
    side: "cloud",
    tunnels: [],
    channelsOpen: 0,
    channelsOpened: 0,
    bytesIn: 0,
    bytesOut: 0,
    errors: 0,
    sentAt: 0,
  },
  "gw.tunnel": {
    node: "c",
    domain: "cloud",
    driver: "fake",
    term: 0,
    active: false,
    tunnels: [],
    error: null,
    sentAt: 0,
  },
  "inspect.viewer": { viewer: "v", sentAt: 0, ttlMs: 100 },
  "inspect.batch": { source: "s", seq: 0, dropped: 0, sync: true, entries: [] },
};

// --- raw frames -----------------------------------------------------------------------------------------------
// Tests that feed the codec hand-made (often broken) frames build them here, in the codec's layout: a
// positional array `[v, type, ...fields]` whose field order is the schema's `fields`.

export const rawPackr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: "number" });

/** The JS value of a frame; `body` fields are placed in the schema's field order. */
export function frameValue(v: unknown, type: unknown, body: unknown): unknown {
  const schema = (messageSchemas as Record<string, { fields?: readonly string[] }>)[String(type)];
  const src = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const fields = schema?.fields ?? Object.keys(src);
  return [v, type, ...fields.map((f) => src[f] ?? null)];
}

export const frame = (type: unknown, body: unknown, v: unknown = PROTOCOL_VERSION): Uint8Array =>
  rawPackr.pack(frameValue(v, type, body));
