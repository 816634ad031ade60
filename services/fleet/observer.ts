// FleetObserver: an independent witness of a running fleet, for the chaos test and the failover benchmark.
// It subscribes on the hub to every domain's assignments (changes and resyncs; the acknowledgements that go to
// one candidate's own subject it does not need) and every gateway candidate's own heartbeat and keeps:
//   - the newest assignment per Gateway (term, actives, when it was seen, on this process's clock);
//   - "claims": intervals in which a candidate said it was acting active for an endpoint type. A claim runs
//     from the sending time of its first active heartbeat to the end of the lease it last reported
//     (sentAt + leaseLeftMs) — deliberately generous, so a candidate still acting on a stale term counts.
// `violations()` sweeps the claims of each Gateway and type and reports every moment when more candidates
// were acting active than the Gateway's replicas: split brain.
import type { Subscription } from "@nats-io/transport-node";
import { replicasOf, type EndpointType, type Gateway } from "../../shared/gateway";
import { connectDaemon, type NatsConnection } from "../../shared/nats";
import { subjects, tryDecode, type Assignment, type GatewayHeartbeat } from "../../shared/protocol";

export type Claim = {
  node: string;
  gateway: string;
  domain: string;
  type: EndpointType;
  term: number;
  start: number;
  end: number;
  seq: number;
};

export type SeenAssignment = Assignment & { seenAt: number };

export type Violation = { gateway: string; type: EndpointType; at: number; nodes: string[]; replicas: number };

/**
 * The `replicas` that violations() takes, from the Gateways of a topology: each one's replicas per type; a
 * name that is not among them (a solo node, its own gateway) has 1.
 */
export function replicasIn(gateways: readonly Gateway[]): (gateway: string, type: EndpointType) => number {
  return (gateway, type) => {
    const gw = gateways.find((g) => g.metadata.name === gateway);
    return gw ? replicasOf(gw.spec)[type] : 1;
  };
}

export class FleetObserver {
  readonly latest = new Map<string, SeenAssignment>();
  readonly history: SeenAssignment[] = [];
  readonly claims: Claim[] = [];
  private readonly open = new Map<string, Claim>();
  private readonly lastSeq = new Map<string, number>();
  private waiters: { pred: (a: SeenAssignment) => boolean; resolve: (a: SeenAssignment) => void }[] = [];
  private subs: Subscription[] = [];
  private heartbeatSub: Subscription | null = null;
  heartbeats = 0;

  private constructor(private readonly nc: NatsConnection) {}

  static async start(hubUrl: string): Promise<FleetObserver> {
    const nc = await connectDaemon(hubUrl, "raven-observer");
    const o = new FleetObserver(nc);
    o.subs.push(nc.subscribe(subjects.allAssignments(), { callback: (_e, m) => o.onAssignment(m.data) }));
    o.followHeartbeats(true);
    await nc.flush();
    return o;
  }

  /**
   * Stops (or resumes) following heartbeats, keeping the assignments: a benchmark measuring the fleet's idle
   * CPU must not load the hub with a second copy of the heartbeat stream (3 % of a core here). Claims open
   * when they stop end there; a claim only starts again from a heartbeat heard after the resume.
   */
  followHeartbeats(on: boolean): void {
    if (on === (this.heartbeatSub !== null)) return;
    if (on) {
      this.heartbeatSub = this.nc.subscribe(subjects.allGatewayHeartbeats(), {
        callback: (_e, m) => this.onHeartbeat(m.data),
      });
      return;
    }
    this.heartbeatSub!.unsubscribe();
    this.heartbeatSub = null;
    this.open.clear();
  }

  private onAssignment(data: Uint8Array): void {
    const msg = tryDecode(data);
    if (msg?.type !== "assignment") return;
    const a: SeenAssignment = { ...msg.body, seenAt: performance.now() };
    const prev = this.latest.get(a.gateway);
    if (prev && prev.term > a.term) return;
    this.latest.set(a.gateway, a);
    if (!prev || prev.term !== a.term) this.history.push(a);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(a)) return true;
      w.resolve(a);
      return false;
    });
  }

  private onHeartbeat(data: Uint8Array): void {
    const msg = tryDecode(data);
    if (msg?.type !== "gw.hb") return;
    this.heartbeats++;
    const hb: GatewayHeartbeat = msg.body;
    const restarted = (this.lastSeq.get(hb.node) ?? 0) >= hb.seq;
    this.lastSeq.set(hb.node, hb.seq);
    for (const type of ["proxy", "tunnel"] as const) {
      const key = `${hb.node}/${type}`;
      const claim = this.open.get(key);
      const acting = hb.active.includes(type);
      if (claim && (restarted || !acting)) {
        // It stopped acting at or before this heartbeat (or the process was replaced).
        if (!restarted) claim.end = Math.min(claim.end, hb.sentAt);
        this.open.delete(key);
      }
      if (!acting) continue;
      const current = this.open.get(key);
      if (current) {
        current.end = Math.max(current.end, hb.sentAt + hb.leaseLeftMs);
        current.term = Math.max(current.term, hb.term);
      } else {
        const c: Claim = {
          node: hb.node,
          gateway: hb.gateway,
          domain: hb.domain,
          type,
          term: hb.term,
          start: hb.sentAt,
          end: hb.sentAt + hb.leaseLeftMs,
          seq: hb.seq,
        };
        this.open.set(key, c);
        this.claims.push(c);
      }
    }
  }

  /** Resolves with the first assignment (already seen or future) that satisfies `pred`. */
  waitFor(pred: (a: SeenAssignment) => boolean, timeoutMs: number, what = "assignment"): Promise<SeenAssignment> {
    for (const a of this.latest.values()) if (pred(a)) return Promise.resolve(a);
    return new Promise((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (a: SeenAssignment) => {
          clearTimeout(timer);
          resolve(a);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Every moment at which a Gateway had more candidates acting active for a type than `replicas(gateway, type)`. */
  violations(replicas: (gateway: string, type: EndpointType) => number): Violation[] {
    return findViolations(this.claims, replicas);
  }

  async stop(): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    this.heartbeatSub?.unsubscribe();
    await this.nc.close();
  }
}

/** Sweeps claims per Gateway and type; reports each instant where more than `replicas` claims overlap. */
export function findViolations(
  claims: readonly Claim[],
  replicas: (gateway: string, type: EndpointType) => number,
): Violation[] {
  const groups = new Map<string, Claim[]>();
  for (const c of claims) {
    const k = `${c.gateway}\u0000${c.type}`;
    const list = groups.get(k);
    if (list) list.push(c);
    else groups.set(k, [c]);
  }
  const out: Violation[] = [];
  for (const group of groups.values()) {
    const { gateway, type } = group[0]!;
    const limit = replicas(gateway, type);
    const edges = group.flatMap((c) => [
      { at: c.start, d: 1, c },
      { at: c.end, d: -1, c },
    ]);
    // Ends before starts at the same instant: touching intervals do not overlap.
    edges.sort((a, b) => a.at - b.at || a.d - b.d);
    const activeNow = new Set<Claim>();
    for (const e of edges) {
      if (e.d < 0) activeNow.delete(e.c);
      else activeNow.add(e.c);
      if (activeNow.size > limit)
        out.push({ gateway, type, at: e.at, nodes: [...activeNow].map((c) => c.node), replicas: limit });
    }
  }
  return out;
}
