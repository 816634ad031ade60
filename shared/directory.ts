// The name map of the fleet as the hub's KV holds it: node -> domain, InternalIP, podCIDR and the Gateway
// record that serves it (active endpoints, term, proxy ports), kept current by watching the `raven_gateways`
// and `raven_nodes` buckets. Proxy mode routes by it (the cloud gateway sends a channel to the right domain;
// an edge gateway resolves a name to an IP inside its own domain only, as IPs collide across domains, and
// finds the cloud gateways it must dial); tunnel mode derives its VPN peers and routes from the whole map.
// Level-triggered: `onChange` fires after any update; readers look the state up. What is derived from the
// whole map (each domain's active proxy gateways, the cloud peers) is built once after a change, on first
// use, not on every lookup: opens, prunes and the 50 ms reconcile all ask for it.
import type { KvWatchEntry } from "@nats-io/kv";
import type { Clock } from "./clock";
import { describeError } from "./errors";
import { keyOfGateway, proxyPortsOf, type Endpoint, type Gateway } from "./gateway";
import { parseGatewayRecord } from "./gateway-manifest";
import { watchBucket } from "./kv";
import type { Logger } from "./log";
import { counters } from "./metrics";
import type { HubBuckets } from "./nats";
import { textDecoder } from "./nats";
import { parseNodeRecord, type NodeRecord } from "./node-record";

export type NodeRoute = Readonly<{
  node: string;
  domain: string;
  internalIP: string;
  /** The record serving the node's domain, when the coordinator has placed the node in one. */
  gateway: Gateway | null;
}>;

export type ProxyPeer = Readonly<{ node: string; gateway: string; host: string; port: number; term: number }>;

export class Directory {
  private readonly records = new Map<string, { gw: Gateway; revision: number }>();
  private readonly nodes = new Map<string, NodeRecord>();
  /** Node name -> key of the record whose status lists it. */
  private readonly recordOfNode = new Map<string, string>();
  private readonly watchers: { stop(): void }[] = [];
  private readonly listeners = new Set<() => void>();
  private derived: {
    activeByDomain: Map<string, string[]>;
    candidatesByDomain: Map<string, string[]>;
    cloudPeers: ProxyPeer[];
  } | null = null;

  constructor(
    private readonly buckets: Pick<HubBuckets, "gateways" | "nodes">,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  start(): void {
    const opts = { clock: this.clock, log: this.log };
    this.watchers.push(watchBucket(this.buckets.gateways, (e) => this.applyRecord(e), { ...opts, what: "gateways" }));
    this.watchers.push(watchBucket(this.buckets.nodes, (e) => this.applyNode(e), { ...opts, what: "nodes" }));
  }

  stop(): void {
    for (const w of this.watchers) w.stop();
    this.listeners.clear();
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  route(node: string): NodeRoute | undefined {
    const facts = this.nodes.get(node);
    if (!facts) return undefined;
    const key = this.recordOfNode.get(node);
    return {
      node,
      domain: facts.domain,
      internalIP: facts.internalIP,
      gateway: (key && this.records.get(key)?.gw) || null,
    };
  }

  record(key: string): Gateway | undefined {
    return this.records.get(key)?.gw;
  }

  /** Every Gateway record as last seen (tunnel mode derives its peers and routes from the whole map). */
  gateways(): Gateway[] {
    return [...this.records.values()].map((r) => r.gw);
  }

  /** Every node record as last seen. */
  nodeRecords(): ReadonlyMap<string, NodeRecord> {
    return this.nodes;
  }

  /** The nodes a domain's Gateway names active for proxy (every record serving a domain names the same). */
  activeProxyOf(domain: string): readonly string[] {
    return this.derive().activeByDomain.get(domain) ?? [];
  }

  /** The proxy candidates (endpoints) of a domain's Gateway, active or not. */
  proxyCandidatesOf(domain: string): readonly string[] {
    return this.derive().candidatesByDomain.get(domain) ?? [];
  }

  /** Active proxy endpoints of exposed (cloud) Gateways with the address edges dial: publicIP:publicPort,
   * else the node's InternalIP and the endpoint port. */
  cloudPeers(): readonly ProxyPeer[] {
    return this.derive().cloudPeers;
  }

  private derive(): NonNullable<Directory["derived"]> {
    if (this.derived) return this.derived;
    const activeByDomain = new Map<string, string[]>();
    const candidatesByDomain = new Map<string, string[]>();
    for (const [node, key] of this.recordOfNode) {
      const domain = this.nodes.get(node)?.domain;
      const gw = this.records.get(key)?.gw;
      if (!domain || !gw || activeByDomain.has(domain)) continue;
      activeByDomain.set(domain, activeProxyNodes(gw));
      candidatesByDomain.set(
        domain,
        gw.spec.endpoints.filter((e) => e.type === "proxy").map((e) => e.nodeName),
      );
    }
    const cloudPeers: ProxyPeer[] = [];
    for (const { gw } of this.records.values()) {
      if (gw.spec.exposeType === "") continue;
      for (const ep of gw.status.activeEndpoints) {
        if (ep.type !== "proxy") continue;
        const host = ep.publicIP ?? this.nodes.get(ep.nodeName)?.internalIP;
        if (host)
          cloudPeers.push({
            node: ep.nodeName,
            gateway: gw.metadata.name,
            host,
            port: ep.publicPort ?? ep.port,
            term: gw.status.term,
          });
      }
    }
    this.derived = { activeByDomain, candidatesByDomain, cloudPeers };
    return this.derived;
  }

  private applyRecord(entry: KvWatchEntry): void {
    const prev = this.records.get(entry.key);
    if (prev && prev.revision >= entry.revision) return;
    if (prev)
      for (const n of prev.gw.status.nodes)
        if (this.recordOfNode.get(n.nodeName) === entry.key) this.recordOfNode.delete(n.nodeName);
    if (entry.operation !== "PUT") {
      this.records.delete(entry.key);
    } else {
      try {
        const gw = parseGatewayRecord(JSON.parse(textDecoder.decode(entry.value)), entry.key);
        this.records.set(entry.key, { gw, revision: entry.revision });
        for (const n of gw.status.nodes) this.recordOfNode.set(n.nodeName, keyOfGateway(gw));
      } catch (err) {
        this.records.delete(entry.key);
        counters.inc("raven_records_rejected_total", { bucket: "gateways" });
        this.log.warn({ key: entry.key, err: describeError(err) }, "skipped a Gateway record that does not parse");
      }
    }
    this.changed();
  }

  private applyNode(entry: KvWatchEntry): void {
    if (entry.operation !== "PUT") {
      this.nodes.delete(entry.key);
    } else {
      try {
        this.nodes.set(entry.key, parseNodeRecord(JSON.parse(textDecoder.decode(entry.value)), entry.key));
      } catch (err) {
        counters.inc("raven_records_rejected_total", { bucket: "nodes" });
        this.log.warn({ key: entry.key, err: describeError(err) }, "skipped a node record that does not parse");
        return;
      }
    }
    this.changed();
  }

  private changed(): void {
    this.derived = null;
    for (const fn of this.listeners) fn();
  }
}

export const activeProxyNodes = (gw: Gateway): string[] =>
  gw.status.activeEndpoints.filter((e: Endpoint) => e.type === "proxy").map((e) => e.nodeName);

export { proxyPortsOf };
