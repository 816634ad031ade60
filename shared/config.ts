// Configuration, parsed once at the edge of each process into one immutable, fully defaulted object.
// Units are in the key names. A bad value is a ConfigError that names the key.
import { readFileSync } from "node:fs";
import { ConfigError, describeError } from "./errors";
import { fenceTimingsProblem } from "./fencing";

export type Timings = Readonly<{
  /** How often a gateway candidate that holds or is named for a role publishes its heartbeat. */
  gatewayHeartbeatMs: number;
  /**
   * How often a standby candidate (no role, not named) publishes its heartbeat. Each heartbeat says when the
   * next is due, and the coordinator scales its dead-after window by it; a standby named active heartbeats at
   * once, so failover costs one round trip more, and a dead standby is found out within
   * gatewayDeadAfterMs × (this / gatewayHeartbeatMs).
   */
  gatewayStandbyHeartbeatMs: number;
  /** The coordinator declares a candidate dead when no heartbeat arrived for this long. */
  gatewayDeadAfterMs: number;
  /**
   * An active gateway acts only until this long after sending the last heartbeat the coordinator acknowledged.
   * Must be below gatewayDeadAfterMs: the old active has stopped before the coordinator may elect another.
   */
  gatewayFenceMs: number;
  /** Consecutive heartbeats a candidate needs before it counts as healthy again (hysteresis). */
  gatewayRiseCount: number;
  /**
   * How long an active whose lease ran out (a late acknowledgement) keeps what it set up for its role, not
   * acting, waiting for a fresh lease in the same term, before it steps down to standby.
   */
  gatewayLapseHoldMs: number;
  nodeHeartbeatMs: number;
  nodeDeadAfterMs: number;
  /** The active coordinator's lease in KV; the standby takes over when it saw no renewal for this long. */
  coordinatorLeaseMs: number;
  coordinatorRenewMs: number;
  /** Every domain's assignment is republished this often, whether or not it changed. */
  resyncMs: number;
  /**
   * How often deadlines (heartbeats, leases) are checked while one is near; otherwise every
   * gatewayDeadAfterMs / 3 (services/coordinator/sweeper.ts).
   */
  sweepMs: number;
  /** A draining gateway stops after this long even if no successor was elected. */
  drainTimeoutMs: number;
  /** First retry delay for registration and KV writes; doubles up to 10x. */
  retryMs: number;
}>;

/** gatewayStandbyHeartbeatMs, unless set, in gatewayHeartbeatMs. */
const STANDBY_STRETCH = 3;

export const defaultTimings: Timings = Object.freeze({
  gatewayHeartbeatMs: 100,
  gatewayStandbyHeartbeatMs: 300,
  gatewayDeadAfterMs: 300,
  gatewayFenceMs: 250,
  gatewayRiseCount: 2,
  gatewayLapseHoldMs: 2000,
  nodeHeartbeatMs: 1000,
  nodeDeadAfterMs: 3500,
  coordinatorLeaseMs: 1000,
  coordinatorRenewMs: 200,
  resyncMs: 1000,
  sweepMs: 20,
  drainTimeoutMs: 3000,
  retryMs: 200,
});

/**
 * The longest heartbeat period a candidate may announce, in gatewayHeartbeatMs: the coordinator never waits
 * longer than this many dead-after windows for anyone (services/coordinator/health.ts).
 */
export const MAX_HEARTBEAT_STRETCH = 10;

export type RavenConfig = Readonly<{ timings: Timings }>;

export const defaultConfig: RavenConfig = Object.freeze({ timings: defaultTimings });

function positiveInt(raw: Record<string, unknown>, key: keyof Timings, path: string): number {
  const value = raw[key];
  if (value === undefined) return defaultTimings[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`${path}.${key}`, `must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function parseTimings(raw: unknown, path = "timings"): Timings {
  if (raw === undefined) return defaultTimings;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(path, "must be an object");
  }
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!Object.hasOwn(defaultTimings, key)) throw new ConfigError(`${path}.${key}`, "is not a known setting");
  }
  const t = Object.fromEntries(
    (Object.keys(defaultTimings) as (keyof Timings)[]).map((k) => [k, positiveInt(obj, k, path)]),
  ) as { -readonly [K in keyof Timings]: Timings[K] };
  // Unless set, a standby heartbeats STANDBY_STRETCH times slower than the heartbeat period set.
  if (obj.gatewayStandbyHeartbeatMs === undefined) t.gatewayStandbyHeartbeatMs = STANDBY_STRETCH * t.gatewayHeartbeatMs;
  const fence = fenceTimingsProblem({
    heartbeatMs: t.gatewayHeartbeatMs,
    fenceMs: t.gatewayFenceMs,
    deadAfterMs: t.gatewayDeadAfterMs,
  });
  if (fence) throw new ConfigError(`${path}.${fence.key}`, fence.reason);
  if (
    t.gatewayStandbyHeartbeatMs < t.gatewayHeartbeatMs ||
    t.gatewayStandbyHeartbeatMs > MAX_HEARTBEAT_STRETCH * t.gatewayHeartbeatMs
  ) {
    throw new ConfigError(
      `${path}.gatewayStandbyHeartbeatMs`,
      `must be between gatewayHeartbeatMs (${t.gatewayHeartbeatMs}) and ${MAX_HEARTBEAT_STRETCH} times it`,
    );
  }
  if (t.coordinatorRenewMs * 3 > t.coordinatorLeaseMs) {
    throw new ConfigError(`${path}.coordinatorRenewMs`, `must be at most a third of coordinatorLeaseMs`);
  }
  if (t.nodeHeartbeatMs * 2 > t.nodeDeadAfterMs) {
    throw new ConfigError(`${path}.nodeHeartbeatMs`, `must be at most half of nodeDeadAfterMs`);
  }
  return Object.freeze(t);
}

export function parseConfig(raw: unknown, path = "config"): RavenConfig {
  if (raw === undefined) return defaultConfig;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(path, "must be an object");
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (key !== "timings") throw new ConfigError(`${path}.${key}`, "is not a known setting");
  }
  return Object.freeze({ timings: parseTimings(obj.timings) });
}

export function loadConfigFile(file: string | undefined): RavenConfig {
  if (!file) return defaultConfig;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError("--config", `cannot read ${file}: ${describeError(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError("--config", `${file} is not JSON: ${describeError(err)}`);
  }
  try {
    return parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError)
      throw new ConfigError(err.key, `${err.message.replace(/^config [^:]+: /, "")} (in ${file})`);
    throw err;
  }
}
