// HealthTracker: the heartbeat hot path, kept out of the statecharts. Records every heartbeat in plain maps
// (no allocation per heartbeat once a candidate is known) and, on each sweep, reports only the candidates
// whose health flipped, which the coordinator turns into one HEALTH event per affected DomainActor.
//
// Health of a gateway candidate = alive (not declared dead), at least riseCount consecutive heartbeats since
// it was last unhealthy (hysteresis against flapping), not draining, and its own data path OK. Whether a
// silent candidate is declared dead is the failure detector's call (detector.ts): the sweep expires exactly
// the candidates it names. A candidate heard again before being declared dead keeps its streak: a late
// heartbeat is not a recovery.
import { MAX_HEARTBEAT_STRETCH } from "../../shared/config";
import type { EndpointType } from "../../shared/gateway";
import type { GatewayHeartbeat, NodeHeartbeat } from "../../shared/protocol";
import type { Silence } from "./detector";

export type CandidateHealth = {
  node: string;
  domain: string;
  /** The Gateway the candidate says it serves; it counts as healthy only for that unit. */
  gateway: string;
  lastSeenAt: number;
  seq: number;
  sentAt: number;
  streak: number;
  term: number;
  draining: boolean;
  datapathOk: boolean;
  acting: EndpointType[];
  /**
   * Its own dead-after window: deadAfterMs stretched by the period its last heartbeat announced (a standby
   * heartbeats less often), between deadAfterMs and MAX_HEARTBEAT_STRETCH times it.
   */
  deadAfterMs: number;
  /** Heard within its dead-after window: its lease may still be running. */
  alive: boolean;
  /**
   * Heard again after it was declared dead, and not healthy since: the coordinator has not acknowledged it
   * since it fell silent, so it holds no lease. (A restart seen only in its seq does not count: any client
   * of a leaf can publish a heartbeat with a low seq, and the real process may still hold a lease.)
   */
  revived: boolean;
  /**
   * Revived and on its way back (not draining, data path OK), but not risen yet. It holds no lease: an
   * election may name another candidate in its place at once; or, if it is the current active, wait the few
   * heartbeats it needs to rise, rather than switch to whoever rose first after a cut that silenced them all
   * (statecharts/domain.ts). A change of this is a flip like a change of health, so the domain hears of it.
   */
  rising: boolean;
  /** When it was last heard again after being declared dead (-Infinity: never). */
  revivedAt: number;
  healthy: boolean;
};

export type NodeLiveness = { node: string; domain: string; lastSeenAt: number; ready: boolean; seq: number };

export type HealthSettings = Readonly<{
  /** Silence after which a candidate heartbeating every heartbeatMs may be declared dead. */
  deadAfterMs: number;
  /** The period deadAfterMs is for; a heartbeat announcing a longer one stretches its sender's window. */
  heartbeatMs: number;
  riseCount: number;
  nodeDeadAfterMs: number;
}>;

export class HealthTracker {
  readonly candidates = new Map<string, CandidateHealth>();
  readonly nodes = new Map<string, NodeLiveness>();
  private startedAt: number;
  private flipped = new Set<string>();

  constructor(
    private readonly settings: HealthSettings,
    now: number,
  ) {
    this.startedAt = now;
  }

  /** True once heartbeats have been watched for a whole dead-after window: before that, absence means nothing. */
  warm(now: number): boolean {
    return now - this.startedAt >= this.settings.deadAfterMs;
  }

  /**
   * Forgets every candidate and starts watching afresh, as a new tracker would (a standby coordinator that
   * stopped following heartbeats while the lease holder was alive, and follows them again).
   */
  restart(now: number): void {
    this.candidates.clear();
    this.flipped = new Set();
    this.startedAt = now;
  }

  /** Some candidate's health flipped since the last sweep (the next sweep reports it). */
  get flipsPending(): boolean {
    return this.flipped.size > 0;
  }

  /** Records a gateway heartbeat; returns the candidate's record. */
  gateway(hb: GatewayHeartbeat, now: number): CandidateHealth {
    let c = this.candidates.get(hb.node);
    if (!c) {
      c = {
        node: hb.node,
        domain: hb.domain,
        gateway: hb.gateway,
        lastSeenAt: now,
        seq: hb.seq,
        sentAt: hb.sentAt,
        streak: 0,
        term: hb.term,
        draining: hb.draining,
        datapathOk: hb.datapathOk,
        acting: hb.active,
        deadAfterMs: this.settings.deadAfterMs,
        alive: false,
        revived: false,
        rising: false,
        revivedAt: -Infinity,
        healthy: false,
      };
      this.candidates.set(hb.node, c);
    }
    // A candidate declared dead rises from one; one that was only late (not declared) goes on.
    const gap = !c.alive;
    const restarted = hb.seq < c.seq;
    // A failing data path breaks the streak too, so a path failing every other heartbeat never counts as healthy.
    c.streak = !hb.datapathOk ? 0 : gap || restarted ? 1 : c.streak + 1;
    c.lastSeenAt = now;
    c.domain = hb.domain;
    c.gateway = hb.gateway;
    c.seq = hb.seq;
    c.sentAt = hb.sentAt;
    c.term = hb.term;
    c.draining = hb.draining;
    c.datapathOk = hb.datapathOk;
    c.acting = hb.active;
    c.deadAfterMs = this.windowFor(hb.everyMs);
    if (gap) {
      c.revived = true;
      c.revivedAt = now;
    }
    this.evaluate(c, now);
    return c;
  }

  /** The dead-after window of a candidate that announced `everyMs` (absent: the usual period). */
  private windowFor(everyMs: number | undefined): number {
    const { deadAfterMs, heartbeatMs } = this.settings;
    if (everyMs === undefined || everyMs <= heartbeatMs) return deadAfterMs;
    return Math.ceil(deadAfterMs * Math.min(everyMs / heartbeatMs, MAX_HEARTBEAT_STRETCH));
  }

  node(hb: NodeHeartbeat, now: number): void {
    const n = this.nodes.get(hb.node);
    if (n) {
      n.lastSeenAt = now;
      n.ready = hb.ready;
      n.seq = hb.seq;
      n.domain = hb.domain;
    } else {
      this.nodes.set(hb.node, { node: hb.node, domain: hb.domain, lastSeenAt: now, ready: hb.ready, seq: hb.seq });
    }
  }

  nodeReady(name: string, now: number): boolean {
    const n = this.nodes.get(name);
    return !!n && n.ready && now - n.lastSeenAt < this.settings.nodeDeadAfterMs;
  }

  /** Re-judges `c` from its latest heartbeat (alive) or, with `dead`, as declared dead by the detector. */
  private evaluate(c: CandidateHealth, now: number, dead = false): void {
    const alive = !dead;
    const healthy = alive && c.streak >= this.settings.riseCount && !c.draining && c.datapathOk;
    if (healthy) c.revived = false;
    const rising = alive && c.revived && !healthy && !c.draining && c.datapathOk;
    if (healthy !== c.healthy || alive !== c.alive || rising !== c.rising) {
      c.healthy = healthy;
      c.alive = alive;
      c.rising = rising;
      this.flipped.add(c.node);
    }
  }

  /** How long each candidate still counted alive has been silent (the failure detector's input). */
  silences(now: number): Silence[] {
    const out: Silence[] = [];
    for (const c of this.candidates.values()) {
      if (c.alive)
        out.push({ node: c.node, domain: c.domain, silentMs: now - c.lastSeenAt, deadAfterMs: c.deadAfterMs });
    }
    return out;
  }

  /**
   * Expires the candidates the detector declared dead (only those silent for their window: the detector can
   * delay a declaration, never advance it) and returns every candidate whose health flipped since last sweep.
   */
  sweep(now: number, dead: Iterable<string> = []): Set<string> {
    for (const node of dead) {
      const c = this.candidates.get(node);
      if (c?.alive && now - c.lastSeenAt >= c.deadAfterMs) this.evaluate(c, now, true);
    }
    const out = this.flipped;
    this.flipped = new Set();
    return out;
  }

  /**
   * Forgets names that are not in the inventory and have been silent for a long while (decommissioned or
   * spoofed: any client of a leaf can publish a heartbeat), so the maps cannot grow without bound.
   */
  prune(now: number, known: (node: string) => boolean, silentMs = 60_000): void {
    for (const [name, c] of this.candidates)
      if (now - c.lastSeenAt > silentMs && !known(name)) this.candidates.delete(name);
    for (const [name, n] of this.nodes) if (now - n.lastSeenAt > silentMs && !known(name)) this.nodes.delete(name);
  }

  isHealthy(node: string): boolean {
    return this.candidates.get(node)?.healthy ?? false;
  }
}
