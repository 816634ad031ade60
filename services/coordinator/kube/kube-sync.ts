// KubeSync: Kubernetes as the source of truth for the coordinator (with --kubeconfig or in-cluster config).
// Informers keep Nodes, NodePools, Gateways and ConfigMap kube-system/raven-cfg; what they say flows two ways:
//
// In: Gateway objects become the KV records the election runs on (validated and defaulted as OpenYurt does,
// raven-cfg's modes applied; kube-system's objects are the only Gateways, so a record with no object is
// deleted). A Gateway that fails validation gets a Warning Event naming the bad field; its last valid record,
// if any, keeps serving, and every other Gateway is untouched. Node labels decide placement: a node registers
// only with the labels its Node has (Coordinator.onRegister asks `labelsOf`), and a relabelled node's record
// follows (within its network domain: an agent never moves between domains on its own).
//
// Out, bounded (write-queue.ts): each Gateway's status (nodes, activeEndpoints) by merge-patch on /status,
// Events ActiveEndpointElected / ActiveEndpointLost for what changed since the status last written, and the
// edge-tunnel-nodes hosts map. Every write computes its content when it runs, from the latest facts, and
// skips when the object already says it (no write per flap: a flapping domain costs one patch per interval).
//
// Only the lease holder writes (to KV or to Kubernetes); both replicas keep the informers warm. Everything is
// level-triggered: changes only mark what to look at, and a periodic resync looks at everything, so drift
// (an edited status, a deleted ConfigMap, a missed event) is repaired within resyncMs.
import type { KV } from "@nats-io/kv";
import {
  GATEWAYS_PATH,
  KubeApiError,
  KubeInformer,
  NODES_PATH,
  readNode,
  type KubeClient,
  type KubeNode,
} from "../../../lib/kube";
import type { Clock, TimerHandle } from "../../../shared/clock";
import { domainOf } from "../../../shared/domains";
import { describeError } from "../../../shared/errors";
import { activeProxyAddress, gatewayKey, isSolo, type Gateway } from "../../../shared/gateway";
import { applyGateway, deleteGateway, sameDefinition } from "../../../shared/gateway-store";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import type { NodeRecord } from "../../../shared/node-record";
import {
  EventReason,
  HOSTS_CONFIGMAP,
  RAVEN_CFG,
  gatewayFromObject,
  hostsMap,
  mirroredStatus,
  nodesByGateway,
  readNodePoolType,
  poolOf,
  readRavenCfg,
  type RavenCfg,
} from "./objects";
import { GatewayEvents, configMapsPath, writeGatewayStatus, writeHostsMap } from "./writes";
import { WriteQueue } from "./write-queue";

export const NODEPOOLS_PATH = "/apis/apps.openyurt.io/v1beta1/nodepools";
const HOSTS_KEY = "configmap/edge-tunnel-nodes";
const RECORD_WRITES_AT_ONCE = 32;

export type KubeSyncOptions = Readonly<{
  client: KubeClient;
  clock: Clock;
  log: Logger;
  /** The hub's Gateway records. */
  gateways: KV;
  /** The records as the coordinator's Inventory sees them (key -> record). */
  records: () => ReadonlyMap<string, { value: Gateway | null }>;
  /** The node records as the Inventory sees them. */
  nodes: () => ReadonlyMap<string, NodeRecord>;
  putNode: (rec: NodeRecord) => Promise<void>;
  /** This coordinator holds the lease now. */
  isActive: () => boolean;
  /** The proxy's address for edge nodes in the hosts map (a Service IP); by default the active cloud proxy
   * endpoint's publicIP. */
  proxyAddress?: string;
  resyncMs?: number;
  /** Per Gateway, the least time between two status writes (default 1000 ms). */
  statusIntervalMs?: number;
  /** Writes per second over everything, and the burst (defaults 50 and 100). */
  qps?: number;
  burst?: number;
}>;

type Dirty = "nodes" | "pools" | "gateways" | "cfg" | "all";
/** A Gateway object's version, read: the record it makes, or why it makes none. */
type Parsed = { rv: string } & ({ gw: Gateway } | { error: string });
const definitionOf = (p: Parsed) => ("gw" in p ? JSON.stringify([p.gw.metadata, p.gw.spec]) : `invalid: ${p.error}`);

export type RegisteredLabels =
  | { kind: "labels"; labels: Readonly<Record<string, string>> }
  | { kind: "not-synced" }
  | { kind: "unknown" };

export class KubeSync {
  private readonly informers: { nodes: KubeInformer; pools: KubeInformer; gateways: KubeInformer; cfg: KubeInformer };
  private readonly hosts: KubeInformer;
  private readonly synced = new Set<string>();
  private readonly queue: WriteQueue;
  private readonly nodes = new Map<string, KubeNode>();
  /** Gateway name -> the record its object's version makes, or the error that version fails with. */
  private readonly parsed = new Map<string, Parsed>();
  private readonly dirty = new Set<Dirty>();
  /** Derived from Nodes, NodePools and Gateways; rebuilt on first use after any of them changed. */
  private placement: { byGateway: Map<string, KubeNode[]>; isCloud: (n: KubeNode) => boolean } | null = null;
  /** Gateway name -> the resourceVersion whose problem was reported (one Warning per version). */
  private readonly reported = new Map<string, string>();
  private cfg: RavenCfg = { l7: false, l3: false };
  private recordsTask: Promise<void> | null = null;
  private recordsAgain = false;
  private resyncTimer: TimerHandle | null = null;
  private debounce: TimerHandle | null = null;
  private readonly events: GatewayEvents;
  private retryTimer: TimerHandle | null = null;
  private stopped = false;

  constructor(private readonly opts: KubeSyncOptions) {
    const { client, clock, log } = opts;
    // The informers re-list less often than the sync looks at everything: a re-list of 10k Nodes by both
    // replicas is the costly part, and the sync's own resync already repairs what Raven wrote.
    const relistMs = 5 * (opts.resyncMs ?? 60_000);
    this.events = new GatewayEvents(client, clock);
    const informer = (what: string, path: string, onChange: () => void, fieldSelector?: string) =>
      new KubeInformer({
        client,
        clock,
        log: log.child({ informer: what }),
        path,
        resyncMs: relistMs,
        ...(fieldSelector ? { fieldSelector } : {}),
        onChange,
        onSynced: () => {
          if (!this.synced.has(what)) log.info({ informer: what }, "informer synced");
          this.synced.add(what);
          this.changed("all");
        },
      });
    this.informers = {
      nodes: informer("nodes", NODES_PATH, () => this.changed("nodes")),
      pools: informer("nodepools", NODEPOOLS_PATH, () => this.changed("pools")),
      gateways: informer("gateways", GATEWAYS_PATH, () => this.changed("gateways")),
      cfg: informer(
        "raven-cfg",
        configMapsPath(RAVEN_CFG.namespace),
        () => this.changed("cfg"),
        `metadata.name=${RAVEN_CFG.name}`,
      ),
    };
    this.hosts = informer(
      "edge-tunnel-nodes",
      configMapsPath(HOSTS_CONFIGMAP.namespace),
      () => this.queue.mark(HOSTS_KEY),
      `metadata.name=${HOSTS_CONFIGMAP.name}`,
    );
    this.queue = new WriteQueue({
      minIntervalMs: opts.statusIntervalMs ?? 1000,
      qps: opts.qps ?? 50,
      burst: opts.burst ?? 100,
      backoffMs: 500,
      maxBackoffMs: 30_000,
      clock,
      write: (key) => (key === HOSTS_KEY ? this.writeHosts() : this.writeStatus(key)),
      onError: (key, err, attempt) => {
        counters.inc("raven_kube_write_errors_total", {
          reason: err instanceof KubeApiError ? String(err.status) : "error",
        });
        const level = attempt === 1 || attempt % 10 === 0 ? "warn" : "debug";
        log[level]({ key, attempt, err: describeError(err) }, "Kubernetes write failed; retrying");
      },
    });
  }

  start(): void {
    for (const i of [...Object.values(this.informers), this.hosts]) i.start();
    this.resyncTimer = this.opts.clock.setInterval(() => this.changed("all"), this.opts.resyncMs ?? 60_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer) this.opts.clock.clearInterval(this.resyncTimer);
    if (this.debounce) this.opts.clock.clearTimeout(this.debounce);
    if (this.retryTimer) this.opts.clock.clearTimeout(this.retryTimer);
    this.queue.stop();
    await Promise.all([...Object.values(this.informers), this.hosts].map((i) => i.stop()));
    await this.recordsTask;
    this.opts.client.close();
  }

  /** Nodes, Gateways and raven-cfg have each been listed once (NodePools are optional: not every cluster has them). */
  get ready(): boolean {
    return ["nodes", "gateways", "raven-cfg"].every((w) => this.synced.has(w));
  }

  /** The labels a registering node must be placed by: its Node's (from the informer's cache, which is current
   * as soon as it has listed, ahead of the debounced recompute). */
  labelsOf(node: string): RegisteredLabels {
    if (!this.ready) return { kind: "not-synced" };
    const o = this.informers.nodes.get(node);
    return o ? { kind: "labels", labels: readNode(o).labels } : { kind: "unknown" };
  }

  get pendingWrites(): number {
    return this.queue.pending;
  }

  /** KV records changed (an election, a status): their objects' status and the hosts map may be stale. */
  recordsChanged(keys: readonly string[]): void {
    if (!this.ready) return;
    for (const key of keys) if (key.startsWith("gw.")) this.markStatus(key.slice(3));
    this.queue.mark(HOSTS_KEY);
    // A record written by anyone else (`raven gateways apply`) is put back the way its object says; an
    // election's write (status only) needs nothing.
    const records = this.opts.records();
    const strayed = keys.some((key) => {
      if (!key.startsWith("gw.")) return false;
      const record = records.get(key)?.value;
      const p = this.parsed.get(key.slice(3));
      if (!p || !("gw" in p)) return !!record && !isSolo(record);
      return !record || !sameDefinition(record, p.gw);
    });
    if (strayed) this.syncRecords();
  }

  /** This coordinator became the lease holder: bring KV and Kubernetes in line with each other. */
  activated(): void {
    this.changed("all");
  }

  // --- in: Kubernetes -> facts and KV ------------------------------------------------------------------------

  /** Something an informer holds changed: recompute after a short debounce (a list delivers many at once). */
  private changed(what: Dirty): void {
    if (this.stopped) return;
    if (what === "all") for (const d of ["nodes", "pools", "gateways", "cfg", "all"] as const) this.dirty.add(d);
    else this.dirty.add(what);
    if (this.debounce) return;
    this.debounce = this.opts.clock.setTimeout(() => {
      this.debounce = null;
      this.recompute();
    }, 20);
  }

  /**
   * Re-reads what changed. Parsing is per object version (a status patch of one Gateway re-reads that one),
   * and the Gateways whose status may now differ are marked: all of them when Nodes, NodePools or raven-cfg
   * changed or on a resync, else the ones whose object changed.
   */
  private recompute(): void {
    const dirty = new Set(this.dirty);
    this.dirty.clear();
    if (dirty.has("nodes")) {
      this.nodes.clear();
      for (const o of this.informers.nodes.list()) this.nodes.set(o.metadata.name, readNode(o));
    }
    if (dirty.has("cfg")) {
      const cfg = readRavenCfg(this.informers.cfg.get(RAVEN_CFG.name, RAVEN_CFG.namespace));
      if (cfg.l7 !== this.cfg.l7 || cfg.l3 !== this.cfg.l3) this.parsed.clear();
      this.cfg = cfg;
    }
    // touched: the object changed (its status may need repair); redefined: what it makes changed (its record,
    // placement and the hosts map may). A status patch touches one Gateway and redefines none.
    const touched = new Set<string>();
    const redefined = new Set<string>();
    if (dirty.has("gateways") || dirty.has("cfg")) {
      const seen = new Set<string>();
      for (const o of this.informers.gateways.list()) {
        const name = o.metadata.name;
        const rv = o.metadata.resourceVersion ?? "";
        seen.add(name);
        const before = this.parsed.get(name);
        if (before?.rv === rv) continue;
        touched.add(name);
        let next: Parsed;
        try {
          next = { rv, gw: gatewayFromObject(o, this.cfg) };
        } catch (err) {
          next = { rv, error: describeError(err) };
        }
        if (!before || definitionOf(before) !== definitionOf(next)) redefined.add(name);
        this.parsed.set(name, next);
      }
      for (const name of this.parsed.keys())
        if (!seen.has(name)) {
          this.parsed.delete(name);
          redefined.add(name);
        }
    }
    const facts = dirty.has("nodes") || dirty.has("pools") || dirty.has("cfg") || dirty.has("all");
    if (facts || redefined.size > 0) this.placement = null;
    if (!this.ready) return;
    this.reportInvalid();
    if (redefined.size > 0 || dirty.has("cfg") || dirty.has("all")) this.syncRecords();
    if (dirty.has("nodes")) this.syncNodeLabels();
    for (const name of facts ? this.parsed.keys() : touched) this.markStatus(name);
    if (facts || redefined.size > 0) this.queue.mark(HOSTS_KEY);
  }

  private markStatus(name: string): void {
    if (this.opts.isActive()) this.queue.mark(`gateway/${name}`);
  }

  /** One Warning Event per version of a Gateway that fails validation. */
  private reportInvalid(): void {
    for (const [name, d] of this.parsed) {
      if ("gw" in d) {
        this.reported.delete(name);
        continue;
      }
      if (this.reported.get(name) === d.rv || !this.opts.isActive()) continue;
      this.reported.set(name, d.rv);
      counters.inc("raven_kube_gateways_invalid_total");
      this.opts.log.warn({ gateway: name, problem: d.error }, "Gateway is invalid; its last valid version is kept");
      void this.events
        .record(name, EventReason.Invalid, "Warning", d.error, this.informers.gateways.get(name))
        .catch((err) => this.opts.log.warn({ gateway: name, err: describeError(err) }, "could not record an Event"));
    }
  }

  /** KV follows the Gateway objects (one pass at a time; a change during a pass runs another). */
  private syncRecords(): void {
    if (!this.opts.isActive() || this.stopped) return;
    if (this.recordsTask) {
      this.recordsAgain = true;
      return;
    }
    this.recordsTask = this.syncRecordsOnce()
      .catch((err) => this.opts.log.warn({ err: describeError(err) }, "syncing Gateway records failed"))
      .finally(() => {
        this.recordsTask = null;
        if (this.recordsAgain) {
          this.recordsAgain = false;
          this.syncRecords();
        }
      });
  }

  private async syncRecordsOnce(): Promise<void> {
    if (!this.cfg.l7 && !this.cfg.l3 && this.parsed.size > 0)
      this.opts.log.warn(
        { configMap: `${RAVEN_CFG.namespace}/${RAVEN_CFG.name}` },
        "raven-cfg turns neither enable-l7-proxy nor enable-l3-tunnel on: no endpoint is elected",
      );
    const records = this.opts.records();
    // Thunks, run RECORD_WRITES_AT_ONCE at a time: a first sync of a large cluster writes every record.
    const work: (() => Promise<string>)[] = [];
    for (const [name, d] of this.parsed) {
      if (!("gw" in d)) continue;
      const current = records.get(gatewayKey(name))?.value;
      if (current && sameDefinition(current, d.gw)) continue;
      work.push(() => applyGateway(this.opts.gateways, d.gw).then((result) => `${name} ${result}`));
    }
    for (const [key, r] of records) {
      if (!key.startsWith("gw.") || !r.value || isSolo(r.value)) continue;
      const name = key.slice(3);
      if (this.parsed.has(name)) continue;
      work.push(() => deleteGateway(this.opts.gateways, name).then(() => `${name} deleted (its object is gone)`));
    }
    if (work.length === 0) return;
    const done: string[] = [];
    let failed = 0;
    const run = async () => {
      // The lease is checked before each write, not once per pass: a pass over thousands of records must not
      // go on writing after another coordinator took over.
      for (let task = work.pop(); task && this.opts.isActive(); task = work.pop()) {
        try {
          done.push(await task());
        } catch (err) {
          failed++;
          this.opts.log.warn({ err: describeError(err) }, "Gateway record write failed");
        }
      }
    };
    await Promise.all(Array.from({ length: RECORD_WRITES_AT_ONCE }, run));
    counters.inc("raven_kube_record_writes_total", {}, done.length);
    this.opts.log.info(
      { written: done.length, failed, first: done.slice(0, 5) },
      "Gateway records follow their objects",
    );
    // A write that failed (the hub busy or restarting) is tried again soon, not at the next resync.
    if (failed > 0 && !this.stopped && !this.retryTimer)
      this.retryTimer = this.opts.clock.setTimeout(() => {
        this.retryTimer = null;
        this.syncRecords();
      }, 1000);
  }

  /** A registered node relabelled in Kubernetes: its record takes the new labels, within its own domain. */
  private syncNodeLabels(): void {
    if (!this.opts.isActive()) return;
    for (const rec of this.opts.nodes().values()) {
      const kube = this.nodes.get(rec.name);
      if (!kube || JSON.stringify(kube.labels) === JSON.stringify(rec.labels)) continue;
      if (domainOf({ name: rec.name, labels: kube.labels }) !== rec.domain) {
        counters.inc("raven_kube_node_moves_total");
        this.opts.log.warn(
          { node: rec.name, domain: rec.domain, labelled: domainOf({ name: rec.name, labels: kube.labels }) },
          "Node labelled into another domain; its agent must register from there",
        );
        continue;
      }
      void this.opts
        .putNode({ ...rec, labels: { ...kube.labels } })
        .catch((err) => this.opts.log.warn({ node: rec.name, err: describeError(err) }, "node record update failed"));
    }
  }

  // --- out: Kubernetes status, Events, hosts map --------------------------------------------------------------

  private async writeStatus(key: string): Promise<void> {
    if (!this.opts.isActive()) return;
    const name = key.slice("gateway/".length);
    const obj = this.informers.gateways.get(name);
    const record = this.opts.records().get(gatewayKey(name))?.value ?? undefined;
    if (!obj || !record) return;
    const served = this.placed().byGateway.get(name) ?? [];
    const status = mirroredStatus(name, record, served, this.cfg);
    await writeGatewayStatus(this.opts.client, this.events, this.opts.log, obj, status, record.status.term);
  }

  private validGateways(): Gateway[] {
    const out: Gateway[] = [];
    for (const d of this.parsed.values()) if ("gw" in d) out.push(d.gw);
    return out;
  }

  private placed(): NonNullable<KubeSync["placement"]> {
    if (this.placement) return this.placement;
    const gateways = this.validGateways();
    const byGateway = nodesByGateway(gateways, [...this.nodes.values()]);
    const cloudPools = new Set(
      this.informers.pools
        .list()
        .filter((p) => readNodePoolType(p) === "cloud")
        .map((p) => p.metadata.name),
    );
    const inExposed = new Set<string>();
    for (const g of gateways)
      if (g.spec.exposeType !== "") for (const n of byGateway.get(g.metadata.name) ?? []) inExposed.add(n.name);
    this.placement = { byGateway, isCloud: (n) => inExposed.has(n.name) || cloudPools.has(poolOf(n)) };
    return this.placement;
  }

  private async writeHosts(): Promise<void> {
    // Until the ConfigMap's own informer has listed, "absent" is not known to be true: wait for it.
    if (!this.opts.isActive() || !this.ready || !this.synced.has("edge-tunnel-nodes")) return;
    const records = [...this.opts.records().values()].flatMap((r) => (r.value ? [r.value] : []));
    const address = this.opts.proxyAddress ?? activeProxyAddress(records);
    const text = hostsMap([...this.nodes.values()], this.placed().isCloud, this.cfg, address);
    if (text === null) return;
    await writeHostsMap(this.opts.client, this.hosts.get(HOSTS_CONFIGMAP.name, HOSTS_CONFIGMAP.namespace), text);
  }
}
