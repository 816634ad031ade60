// NATS helpers: daemon connections (retry forever with short waits, because a leaf retries the hub only once
// per second and actors must outlive any server restart), one-shot connections for the CLI (fail fast with a
// MeshUnavailableError naming the URL), and the hub's KV buckets (JetStream domain `hub`, reachable from a
// leaf as well as from the hub).
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { MeshUnavailableError, describeError } from "./errors";
import { decodeAs, encode, subjects, type StatusReply } from "./protocol";

export type { NatsConnection, KV };

export const JETSTREAM_DOMAIN = "hub";

export const Buckets = {
  gateways: "raven_gateways",
  nodes: "raven_nodes",
  leases: "raven_leases",
} as const;
export type BucketName = (typeof Buckets)[keyof typeof Buckets];

/** A long-lived connection for an actor process: waits for the first server and reconnects forever. */
export async function connectDaemon(servers: string, name: string): Promise<NatsConnection> {
  return connect({
    servers: servers.split(","),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 50,
    waitOnFirstConnect: true,
    pingInterval: 5_000,
    maxPingOut: 2,
    ignoreClusterUpdates: true,
  });
}

/** A connection for a command: one try, a clear error if the mesh is not there. */
export async function connectOnce(servers: string, name: string, timeoutMs = 2_000): Promise<NatsConnection> {
  try {
    return await connect({ servers: servers.split(","), name, timeout: timeoutMs, maxReconnectAttempts: 0 });
  } catch (err) {
    throw new MeshUnavailableError(`cannot reach NATS at ${servers}: ${describeError(err)}`, { cause: err });
  }
}

export type HubBuckets = Readonly<{ gateways: KV; nodes: KV; leases: KV }>;

/** Opens (creating when missing) the KV buckets that hold Raven's durable state, on file storage. */
export async function openBuckets(nc: NatsConnection, timeoutMs = 5_000): Promise<HubBuckets> {
  const js = jetstream(nc, { domain: JETSTREAM_DOMAIN, timeout: timeoutMs });
  const kvm = new Kvm(js);
  const open = (name: BucketName) => kvm.create(name, { history: 1, storage: "file", timeout: timeoutMs });
  try {
    const [gateways, nodes, leases] = await Promise.all([
      open(Buckets.gateways),
      open(Buckets.nodes),
      open(Buckets.leases),
    ]);
    return { gateways, nodes, leases };
  } catch (err) {
    throw new MeshUnavailableError(
      `cannot open KV buckets on JetStream domain ${JETSTREAM_DOMAIN}: ${describeError(err)}`,
      {
        cause: err,
      },
    );
  }
}

/** Opens existing buckets without creating them (for read-only tools). */
export async function bindBuckets(nc: NatsConnection, timeoutMs = 2_000): Promise<HubBuckets> {
  const js = jetstream(nc, { domain: JETSTREAM_DOMAIN, timeout: timeoutMs });
  const kvm = new Kvm(js);
  const open = (name: BucketName) => kvm.open(name, { bindOnly: true, timeout: timeoutMs });
  try {
    const [gateways, nodes, leases] = await Promise.all([
      open(Buckets.gateways),
      open(Buckets.nodes),
      open(Buckets.leases),
    ]);
    return { gateways, nodes, leases };
  } catch (err) {
    throw new MeshUnavailableError(
      `Raven's KV buckets are not on this mesh (is the coordinator running?): ${describeError(err)}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Asks the active coordinator for the fleet status. A reply that does not decode is a typed error of its
 * own (version skew, oversized reply); no answer in time is a MeshUnavailableError.
 */
export async function requestStatus(
  nc: NatsConnection,
  opts: { domain?: string; timeoutMs?: number } = {},
): Promise<StatusReply> {
  let reply;
  try {
    reply = await nc.request(subjects.status(), encode("status.request", opts.domain ? { domain: opts.domain } : {}), {
      timeout: opts.timeoutMs ?? 2_000,
    });
  } catch (err) {
    throw new MeshUnavailableError(`no active coordinator answered (${describeError(err)}); is the fleet running?`, {
      cause: err,
    });
  }
  return decodeAs(reply.data, "status.reply");
}

export const textEncoder = new TextEncoder();
export const textDecoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return textEncoder.encode(JSON.stringify(value));
}
