// Process-wide metrics. `counters` stays the hot-path API (one Map lookup per increment, no prom-client work
// on the way); the Prometheus registry reads it only when scraped, as one counter per name. Gauges and
// histograms that need Prometheus types (terms, roles, election latency) are prom-client objects registered
// in the same registry. `startMetricsServer` (metrics-server.ts) serves it as /metrics.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type CounterLabels = Readonly<Record<string, string>>;

function keyOf(name: string, labels?: CounterLabels): string {
  if (!labels) return name;
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `${name}{${parts.join(",")}}`;
}

export type CounterEntry = { name: string; labels: CounterLabels; value: number };
type Entry = CounterEntry;

export class Counters {
  private values = new Map<string, Entry>();
  /** Other threads' counters (the gateway's proxy thread has a module instance of its own), by thread. */
  private threads = new Map<string, readonly Entry[]>();

  inc(name: string, labels?: CounterLabels, by = 1): void {
    const key = keyOf(name, labels);
    const e = this.values.get(key);
    if (e) e.value += by;
    else this.values.set(key, { name, labels: labels ?? {}, value: by });
  }

  get(name: string, labels?: CounterLabels): number {
    return this.values.get(keyOf(name, labels))?.value ?? 0;
  }

  /** Sum over every label set of a counter. */
  total(name: string): number {
    let sum = 0;
    for (const e of this.values.values()) if (e.name === name) sum += e.value;
    return sum;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.values].map(([k, e]) => [k, e.value]));
  }

  /** This thread's counters, for another thread to export (see `setThread`). */
  own(): Entry[] {
    return [...this.values.values()].map((e) => ({ ...e }));
  }

  /** Takes another thread's counters as of now (replacing what it sent before), to export with these. */
  setThread(thread: string, entries: readonly Entry[]): void {
    this.threads.set(thread, entries);
  }

  /** Every label set of every counter, this thread's and the others' summed, for the Prometheus export. */
  entries(): Iterable<Entry> {
    if (this.threads.size === 0) return this.values.values();
    const sum = new Map<string, Entry>();
    for (const list of [[...this.values.values()], ...this.threads.values()])
      for (const e of list) {
        const key = keyOf(e.name, e.labels);
        const have = sum.get(key);
        if (have) have.value += e.value;
        else sum.set(key, { ...e });
      }
    return sum.values();
  }
}

export const counters = new Counters();

export const registry = new Registry();

const HELP: Record<string, string> = {
  raven_messages_rejected_total: "Malformed, unknown or mismatched messages dropped, by reason",
  raven_failovers_total: "Term changes that replaced an active gateway",
  raven_elections_total: "Record writes that changed a term",
  raven_heartbeats_missed_total: "Gateway candidates declared dead after missing heartbeats",
  raven_inspect_dropped_total: "Inspection entries dropped by a full buffer",
};

/** Prometheus counters mirroring `counters`, created when a name is first scraped. */
const mirrored = new Map<string, Counter<string>>();

function syncCounters(): void {
  const byName = new Map<string, Entry[]>();
  for (const e of counters.entries()) {
    let list = byName.get(e.name);
    if (!list) byName.set(e.name, (list = []));
    list.push(e);
  }
  for (const [name, list] of byName) {
    let c = mirrored.get(name);
    const labelNames = [...new Set(list.flatMap((e) => Object.keys(e.labels)))].sort();
    if (c && labelNames.some((l) => !(c as unknown as { labelNames: string[] }).labelNames.includes(l))) {
      registry.removeSingleMetric(name);
      c = undefined;
    }
    if (!c) {
      if (registry.getSingleMetric(name)) continue; // a prom-client metric of its own (declared below)
      c = new Counter({ name, help: HELP[name] ?? name.replaceAll("_", " "), labelNames, registers: [registry] });
      mirrored.set(name, c);
    }
    c.reset();
    for (const e of list) c.inc(e.labels, e.value);
  }
}

export const METRICS_CONTENT_TYPE = registry.contentType;

/** The registry in Prometheus text format. */
export async function metricsText(): Promise<string> {
  syncCounters();
  return registry.metrics();
}

let defaultsOn = false;
/**
 * Process CPU, memory, event loop lag: only for processes that serve /metrics. The lag monitor samples once
 * a second, not every 10 ms as prom-client would: each sample is a timer that wakes the process, a wake-up
 * costs ~85 µs of CPU on a small VM, and 100 a second were most of an idle node actor's CPU (0.35 % of a core
 * each, ~7 % across the demo fleet). A stall still shows as lag; only its resolution is coarser.
 */
export function enableProcessMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics({ register: registry, prefix: "raven_process_", eventLoopMonitoringPrecision: 1_000 });
}

// --- Prometheus-typed metrics ---------------------------------------------------------------------------------

/** The gateway-actor's role and term gauges, on every role change. */
export function reportGatewayRole(
  labels: { domain: string; gateway: string; node: string },
  role: string,
  term: number,
): void {
  metrics.gatewayTerm.set(labels, term);
  for (const r of ["standby", "active", "lapsed", "draining", "stopped"])
    metrics.gatewayRole.set({ ...labels, role: r }, r === role ? 1 : 0);
}

export const metrics = {
  /** The highest term a gateway candidate has seen (gateway-actor). */
  gatewayTerm: new Gauge({
    name: "raven_gateway_term",
    help: "Highest term this gateway candidate has seen",
    labelNames: ["domain", "gateway", "node"],
    registers: [registry],
  }),
  /** 1 for the candidate's current role, 0 for the others (gateway-actor). */
  gatewayRole: new Gauge({
    name: "raven_gateway_role",
    help: "Current role of this gateway candidate (1 = in this role)",
    labelNames: ["domain", "gateway", "node", "role"],
    registers: [registry],
  }),
  /** A unit's term as last written (coordinator). */
  domainTerm: new Gauge({
    name: "raven_domain_term",
    help: "Term of a domain's Gateway record as last written by this coordinator",
    labelNames: ["domain", "gateway"],
    registers: [registry],
  }),
  /** From a candidate's health flip (or the unit's first decision) to the record written with the new term. */
  electionLatency: new Histogram({
    name: "raven_election_latency_seconds",
    help: "From the health change the coordinator reacted to until the new term was written",
    labelNames: ["domain"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  }),
  // The data plane's metrics, registered now (zero until the channel and tunnel engines report).
  channelsOpen: new Gauge({ name: "raven_channels_open", help: "Proxy channels open", registers: [registry] }),
  channelBytes: new Counter({
    name: "raven_channel_bytes_total",
    help: "Bytes carried by proxy channels",
    labelNames: ["direction"],
    registers: [registry],
  }),
  channelErrors: new Counter({
    name: "raven_channel_errors_total",
    help: "Proxy channels aborted by an error",
    labelNames: ["reason"],
    registers: [registry],
  }),
  proxyLinks: new Gauge({
    name: "raven_proxy_links",
    help: "Proxy links (spare connections to one cloud peer) per state (idle, connecting, up, degraded, backoff, closed)",
    labelNames: ["state"],
    registers: [registry],
  }),
} as const;

metrics.channelsOpen.set(0);
metrics.channelBytes.inc({ direction: "in" }, 0);
metrics.channelBytes.inc({ direction: "out" }, 0);
metrics.channelErrors.inc({ reason: "none" }, 0);
for (const state of ["idle", "connecting", "up", "degraded", "backoff", "closed"]) metrics.proxyLinks.set({ state }, 0);
// Always present, so a dashboard can graph them before the first occurrence.
for (const name of ["raven_messages_rejected_total", "raven_failovers_total", "raven_heartbeats_missed_total"])
  counters.inc(name, undefined, 0);
