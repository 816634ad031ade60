// InspectRecorder: the viewer's side of mesh inspection. Announces itself (inspect.viewer) every second on
// raven.ctl.inspect.viewer and on each known domain's raven.d.<domain>.inspect.viewer, so that actor
// processes publish while it runs and stop ~3 s after it is gone; records every inspection entry they send
// in a bounded history (oldest dropped first) with a server sequence number, for the live view and the
// timeline; polls the active coordinator's status every second for the topology (domains, candidates,
// health, heartbeat ages). Listeners get both as they arrive; nothing here blocks on a slow listener.
import type { Subscription } from "@nats-io/transport-node";
import type { Clock, TimerHandle } from "../../shared/clock";
import { describeError } from "../../shared/errors";
import { requestStatus, type NatsConnection } from "../../shared/nats";
import {
  encode,
  subjects,
  tryDecode,
  type GatewayProxy,
  type GatewayTunnel,
  type InspectEntry,
  type StatusReply,
} from "../../shared/protocol";

const PROXY_REPORT_TTL_MS = 3_500;

export type RecordedEntry = InspectEntry & { seq: number; source: string; domain?: string };

/** A gateway's latest proxy report (peer links, channels), with when it arrived. */
export type ProxyReport = GatewayProxy & { receivedAt: number };

/** A gateway candidate's latest tunnel-mode report (gw.tunnel: its L3 TunnelActors), with when it arrived. */
export type TunnelReport = GatewayTunnel & { receivedAt: number };

export type Topology = {
  status: StatusReply | null;
  error: string | null;
  at: number;
  proxies: Record<string, ProxyReport>;
  tunnels: Record<string, TunnelReport>;
};

export type RecorderUpdate = { type: "inspect"; entries: RecordedEntry[] } | { type: "topology"; topology: Topology };

export type RecorderOptions = Readonly<{
  nc: NatsConnection;
  clock: Clock;
  viewerId: string;
  /** Entries kept for the timeline. */
  maxHistory?: number;
  presenceEveryMs?: number;
  statusEveryMs?: number;
  /** How long after the last announcement publishers keep publishing. */
  ttlMs?: number;
}>;

export class InspectRecorder {
  private history: RecordedEntry[] = [];
  private readonly latest = new Map<string, RecordedEntry>();
  private nextSeq = 1;
  private readonly subs: Subscription[] = [];
  private readonly timers: TimerHandle[] = [];
  private readonly listeners = new Set<(u: RecorderUpdate) => void>();
  private polling = false;
  topology: Topology = { status: null, error: "no status yet", at: 0, proxies: {}, tunnels: {} };
  /** Gateway node -> its latest proxy / tunnel report; reports older than a few seconds are dropped (gateway gone). */
  private readonly proxies = new Map<string, ProxyReport>();
  private readonly tunnels = new Map<string, TunnelReport>();
  /** Entries dropped from the front of the history (the timeline starts after them). */
  droppedHistory = 0;
  /** Entries publishers reported they dropped (their buffers overflowed). */
  droppedAtSource = 0;

  constructor(private readonly opts: RecorderOptions) {}

  start(): void {
    const { nc, clock } = this.opts;
    for (const subject of [subjects.allEdgeInspect(), subjects.allCoordinatorInspect()]) {
      this.subs.push(nc.subscribe(subject, { callback: (err, m) => void (err || this.onBatch(m.data)) }));
    }
    this.subs.push(
      nc.subscribe(subjects.allGatewayProxy(), {
        callback: (err, m) => {
          if (err) return;
          const msg = tryDecode(m.data);
          if (msg?.type === "gw.proxy")
            this.proxies.set(msg.body.node, { ...msg.body, receivedAt: this.opts.clock.wallMs() });
        },
      }),
      nc.subscribe(subjects.allGatewayTunnel(), {
        callback: (err, m) => {
          if (err) return;
          const msg = tryDecode(m.data);
          if (msg?.type === "gw.tunnel")
            this.tunnels.set(msg.body.node, { ...msg.body, receivedAt: this.opts.clock.wallMs() });
        },
      }),
    );
    this.announce();
    void this.poll();
    this.timers.push(clock.setInterval(() => this.announce(), this.opts.presenceEveryMs ?? 1_000));
    this.timers.push(clock.setInterval(() => void this.poll(), this.opts.statusEveryMs ?? 1_000));
  }

  stop(): void {
    for (const t of this.timers) this.opts.clock.clearInterval(t);
    for (const s of this.subs) s.unsubscribe();
    this.listeners.clear();
  }

  listen(fn: (u: RecorderUpdate) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Entries with seq > since, oldest first, at most `limit` (the newest ones). */
  entries(since = 0, limit = 20_000): RecordedEntry[] {
    let i = this.history.length;
    while (i > 0 && this.history[i - 1]!.seq > since) i--;
    const out = this.history.slice(i);
    return out.length > limit ? out.slice(out.length - limit) : out;
  }

  actors(): RecordedEntry[] {
    return [...this.latest.values()];
  }

  private emit(u: RecorderUpdate): void {
    for (const fn of this.listeners) {
      try {
        fn(u);
      } catch {
        // a listener's failure is its own (a closed HTTP response)
      }
    }
  }

  private announce(): void {
    const ttlMs = this.opts.ttlMs ?? 3_000;
    const msg = encode("inspect.viewer", { viewer: this.opts.viewerId, sentAt: this.opts.clock.wallMs(), ttlMs });
    const targets = [
      subjects.controlInspectViewer(),
      ...(this.topology.status?.domains ?? []).map((d) => subjects.inspectViewer(d.domain)),
    ];
    for (const s of new Set(targets)) {
      try {
        this.opts.nc.publish(s, msg);
      } catch {
        // disconnected: the next announcement goes out after the reconnect
      }
    }
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const hadDomains = new Set((this.topology.status?.domains ?? []).map((d) => d.domain));
    const now = this.opts.clock.wallMs();
    for (const reports of [this.proxies, this.tunnels])
      for (const [node, r] of reports) if (now - r.receivedAt > PROXY_REPORT_TTL_MS) reports.delete(node);
    const proxies = Object.fromEntries(this.proxies);
    const tunnels = Object.fromEntries(this.tunnels);
    try {
      this.topology = {
        status: await requestStatus(this.opts.nc, { timeoutMs: 1_500 }),
        error: null,
        at: this.opts.clock.wallMs(),
        proxies,
        tunnels,
      };
    } catch (err) {
      this.topology = {
        status: this.topology.status,
        error: describeError(err),
        at: this.opts.clock.wallMs(),
        proxies,
        tunnels,
      };
    } finally {
      this.polling = false;
    }
    // A domain seen for the first time hears the viewer at once, not a second later.
    if ((this.topology.status?.domains ?? []).some((d) => !hadDomains.has(d.domain))) this.announce();
    this.emit({ type: "topology", topology: this.topology });
  }

  /** Records one inspection batch (exposed for tests). */
  onBatch(data: Uint8Array): void {
    const msg = tryDecode(data);
    if (msg?.type !== "inspect.batch") return;
    const b = msg.body;
    this.droppedAtSource += b.dropped;
    const recorded: RecordedEntry[] = b.entries.map((e) => ({
      ...e,
      seq: this.nextSeq++,
      source: b.source,
      ...(b.domain ? { domain: b.domain } : {}),
    }));
    for (const e of recorded) {
      this.history.push(e);
      this.latest.set(e.actor, e);
    }
    const max = this.opts.maxHistory ?? 50_000;
    if (this.history.length > max * 1.1) {
      const cut = this.history.length - max;
      this.history = this.history.slice(cut);
      this.droppedHistory += cut;
    }
    if (recorded.length) this.emit({ type: "inspect", entries: recorded });
  }
}
