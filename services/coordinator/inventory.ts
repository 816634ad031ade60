// Inventory: the coordinator's in-memory view of the hub's KV (Gateway records and node facts), kept current
// by KV watches, plus the partition into election units computed from it. Both coordinator replicas keep it
// warm, so a standby that takes over decides from the same facts at once. Watches are restarted whenever
// they end (hub restart); a record that does not parse is counted and skipped, never fatal.
import type { KvWatchEntry } from "@nats-io/kv";
import type { Clock, TimerHandle } from "../../shared/clock";
import {
  computeUnits,
  endpointOwners,
  placeNode,
  type NodeFacts,
  type Partition,
  type Placement,
} from "../../shared/domains";
import { describeError } from "../../shared/errors";
import type { Gateway } from "../../shared/gateway";
import { parseGatewayRecord } from "../../shared/gateway-manifest";
import type { HubBuckets } from "../../shared/nats";
import { encodeJson, textDecoder } from "../../shared/nats";
import type { Logger } from "../../shared/log";
import { counters } from "../../shared/metrics";
import { watchBucket, type Versioned } from "../../shared/kv";
import { parseNodeRecord, type NodeRecord } from "../../shared/node-record";

export type InventoryChange = {
  /** The partition into units changed (units added/removed, membership or candidates changed). */
  partition: boolean;
  /** Record keys whose stored value changed. */
  records: string[];
  /** Units whose member nodes (or their facts) may have changed. */
  membersOf: Set<string>;
  /** A Gateway spec was added, changed or removed: membership of any unit may have moved. */
  gatewaysChanged: boolean;
};

/** The facts that place a node and describe it in its Gateway's status (registeredAt aside). */
function sameFacts(a: NodeRecord | undefined, b: NodeRecord): boolean {
  return (
    !!a &&
    a.domain === b.domain &&
    a.internalIP === b.internalIP &&
    a.podCIDR === b.podCIDR &&
    JSON.stringify(a.labels) === JSON.stringify(b.labels)
  );
}

export class Inventory {
  readonly gateways = new Map<string, Versioned<Gateway>>();
  readonly nodes = new Map<string, NodeRecord>();
  partition: Partition = { units: new Map(), unitOfNode: new Map() };
  /** Candidate node -> the unit key it is a candidate of. */
  readonly candidateUnit = new Map<string, string>();
  private recomputeTimer: TimerHandle | null = null;
  private pendingRecords = new Set<string>();
  private pendingPartition = false;
  private pendingNodes = new Set<string>();
  private pendingGateways = false;
  /** How long the last partition recompute took: the debounce grows with it, so a burst of registrations
   * into a large inventory costs a bounded share of the CPU. */
  private lastRecomputeMs = 0;
  private watchers: { stop(): void }[] = [];
  /** Gateway names and endpoint owners for `place`, rebuilt after any Gateway spec change. */
  private placementIndex: { names: Set<string>; owners: Map<string, string> } | null = null;

  constructor(
    private readonly buckets: HubBuckets,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly onChange: (change: InventoryChange) => void,
    private readonly debounceMs = 20,
  ) {}

  start(): void {
    const opts = { clock: this.clock, log: this.log };
    this.watchers.push(watchBucket(this.buckets.gateways, (e) => this.applyGateway(e), { ...opts, what: "gateways" }));
    this.watchers.push(watchBucket(this.buckets.nodes, (e) => this.applyNode(e), { ...opts, what: "nodes" }));
  }

  stop(): void {
    for (const w of this.watchers) w.stop();
    if (this.recomputeTimer) this.clock.clearTimeout(this.recomputeTimer);
  }

  private applyGateway(entry: KvWatchEntry): void {
    const key = entry.key;
    const prev = this.gateways.get(key);
    if (prev && prev.revision >= entry.revision) return;
    if (entry.operation !== "PUT") {
      this.gateways.delete(key);
      this.placementIndex = null;
      this.pendingGateways = true;
      this.markChanged(key, true);
      return;
    }
    try {
      const gw = parseGatewayRecord(JSON.parse(textDecoder.decode(entry.value)), key);
      const specChanged = !prev?.value || JSON.stringify(prev.value.spec) !== JSON.stringify(gw.spec);
      this.gateways.set(key, { value: gw, revision: entry.revision });
      if (specChanged) {
        this.placementIndex = null;
        this.pendingGateways = true;
      }
      this.markChanged(key, specChanged && key.startsWith("gw."));
    } catch (err) {
      counters.inc("raven_records_rejected_total", { bucket: "gateways" });
      this.log.warn({ key, err: describeError(err) }, "skipping malformed Gateway record");
    }
  }

  private applyNode(entry: KvWatchEntry): void {
    if (entry.operation !== "PUT") {
      if (this.nodes.delete(entry.key)) {
        this.pendingNodes.add(entry.key);
        this.markChanged(null, true);
      }
      return;
    }
    try {
      const rec = parseNodeRecord(JSON.parse(textDecoder.decode(entry.value)), entry.key);
      const prev = this.nodes.get(rec.name);
      this.nodes.set(rec.name, rec);
      if (!sameFacts(prev, rec)) {
        this.pendingNodes.add(rec.name);
        this.markChanged(null, true);
      }
    } catch (err) {
      counters.inc("raven_records_rejected_total", { bucket: "nodes" });
      this.log.warn({ key: entry.key, err: describeError(err) }, "skipping malformed node record");
    }
  }

  private markChanged(recordKey: string | null, partition: boolean): void {
    if (recordKey) this.pendingRecords.add(recordKey);
    if (partition) this.pendingPartition = true;
    if (this.recomputeTimer) return;
    this.recomputeTimer = this.clock.setTimeout(
      () => this.flush(),
      Math.max(this.debounceMs, 10 * this.lastRecomputeMs),
    );
  }

  /** Applies pending changes now (also used by tests). */
  flush(): void {
    this.recomputeTimer = null;
    const partitionChanged = this.pendingPartition;
    const membersOf = new Set<string>();
    for (const n of this.pendingNodes) {
      const before = this.partition.unitOfNode.get(n);
      if (before) membersOf.add(before);
    }
    if (partitionChanged) {
      const t0 = performance.now();
      this.recompute();
      this.lastRecomputeMs = performance.now() - t0;
    }
    for (const n of this.pendingNodes) {
      const after = this.partition.unitOfNode.get(n);
      if (after) membersOf.add(after);
    }
    const records = [...this.pendingRecords];
    this.pendingRecords.clear();
    this.pendingNodes.clear();
    this.pendingPartition = false;
    const gatewaysChanged = this.pendingGateways;
    this.pendingGateways = false;
    this.onChange({ partition: partitionChanged, records, membersOf, gatewaysChanged });
  }

  private userGateways(): Gateway[] {
    const out: Gateway[] = [];
    for (const [key, v] of this.gateways) if (key.startsWith("gw.") && v.value) out.push(v.value);
    return out;
  }

  private recompute(): void {
    this.partition = computeUnits(this.userGateways(), [...this.nodes.values()]);
    this.candidateUnit.clear();
    for (const unit of this.partition.units.values())
      for (const c of unit.candidates) this.candidateUnit.set(c, unit.key);
  }

  /** Where a node registering now belongs, without waiting for the debounced recompute. */
  place(node: Pick<NodeFacts, "name" | "labels">): Placement {
    if (!this.placementIndex) {
      const gws = this.userGateways();
      this.placementIndex = { names: new Set(gws.map((g) => g.metadata.name)), owners: endpointOwners(gws) };
    }
    return placeNode(node, this.placementIndex.names, this.placementIndex.owners);
  }

  /** Stores a node's facts unless they are already stored as they are. */
  async putNode(rec: NodeRecord): Promise<void> {
    if (sameFacts(this.nodes.get(rec.name), rec)) return;
    await this.buckets.nodes.put(rec.name, encodeJson(rec));
  }
}
