// Mesh inspection: an actor process publishes what its xstate actors do (one entry per processed event: the
// event, the resulting state, term and context) so that `raven ui` can draw live statecharts, event logs and
// a replayable timeline. Costs nearly nothing while nobody watches:
//
// - Presence. A viewer announces itself every ~1 s (inspect.viewer on raven.ctl.inspect.viewer and on each
//   domain's raven.d.<domain>.inspect.viewer). Without a live announcement (`ttlMs`, ~3 s) nothing runs:
//   actors registered with `attach` have no inspection observer at all (xstate then skips building
//   inspection events), no timer runs, nothing is serialized. `attach` is what the services use: an
//   observer passed as `createActor(m, { inspect })` stays subscribed for the actor's life and, even though
//   it returns after one boolean test, costs the actor ~3.5 µs per event in xstate itself (measured by
//   bench/inspect-overhead.ts: 22 % of the heartbeat path's throughput), so it is only for tests and tools.
// - Sampling. Hot events (TICK by default: the GatewayActor gets one every sweep and on every heartbeat) are
//   published only when they changed the state value or the term; so are ASSIGNMENT (re-sent as every
//   heartbeat's acknowledgement) and RESYNC.
// - Bounds. Entries wait in a buffer of `maxBuffer` (oldest dropped first, counted in
//   raven_inspect_dropped_total and reported in the next batch's `dropped`); every `flushMs` at most
//   `maxBatchesPerFlush` batches of `maxBatch` entries are published. Publishing never waits.
// - Safety. Nothing here throws into the actor: any failure is counted (raven_inspect_errors_total) and the
//   entry dropped.
//
// A new viewer gets a `sync` batch first: the current state of every actor this process runs, so the page is
// complete at once, not only after the next transition.
import type { InspectionEvent } from "xstate";
import { systemClock, type Clock, type TimerHandle } from "./clock";
import { counters } from "./metrics";
import { encode, subjects, tryDecode, type InspectEntry } from "./protocol";

export const INSPECT_DROPPED = "raven_inspect_dropped_total";
export const INSPECT_ERRORS = "raven_inspect_errors_total";
export const INSPECT_PUBLISHED = "raven_inspect_entries_published_total";

export type InspectorSettings = Readonly<{
  /** Batches are published at most this often (and only while viewed). */
  flushMs: number;
  maxBuffer: number;
  maxBatch: number;
  maxBatchesPerFlush: number;
  /** Event types published only when they change the state value or the term. */
  quietEvents: ReadonlySet<string>;
}>;

export const defaultInspectorSettings: InspectorSettings = {
  flushMs: 100,
  maxBuffer: 2_000,
  maxBatch: 64,
  maxBatchesPerFlush: 8,
  // TICK: every sweep and heartbeat; ASSIGNMENT: the coordinator re-sends it as each heartbeat's
  // acknowledgement (a lease renewal); RESYNC: every resyncMs per DomainActor; STATUS and PROBE: an L3
  // TunnelActor's driver status (every 250 ms to 2 s) and latency probe (every 2 s). Shown when they change something.
  quietEvents: new Set(["TICK", "ASSIGNMENT", "RESYNC", "STATUS", "PROBE"]),
};

export type MeshInspectorOptions = Readonly<{
  /** This process's identity, `<kind>/<name>`; also the actor id of `inspect`. */
  source: string;
  /** The edge domain this process serves (absent for the coordinator). */
  domain?: string;
  /** Where batches go. */
  subject: string;
  publish: (subject: string, data: Uint8Array) => void;
  clock?: Clock;
  settings?: Partial<InspectorSettings>;
}>;

type Inspect = (event: InspectionEvent) => void;
/** What `attach` needs of an xstate actor: its system's dynamic inspection subscription. */
export type InspectableActor = {
  getSnapshot(): unknown;
  readonly sessionId: string;
  readonly system: { inspect(observer: Inspect): { unsubscribe(): void } };
};
/** The part of an inspector a service needs: register its actors. */
export type ActorInspector = { attach(actor: InspectableActor, actorId?: string): void };
type AnyActorRef = { getSnapshot(): unknown; readonly sessionId: string };
type Last = { state: string; term: number | null };

const cut = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

function json(value: unknown, max: number): string | undefined {
  try {
    const s = JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? String(v) : v));
    return s === undefined ? undefined : cut(s, max);
  } catch {
    return undefined;
  }
}

function stateString(value: unknown): string {
  return typeof value === "string" ? value : cut(json(value, 256) ?? String(value), 256);
}

/** A machine's term, wherever it keeps one: the GatewayActor's `term`, the DomainActor's record status. */
function termOf(context: unknown): number | null {
  const c = context as { term?: unknown; record?: { status?: { term?: unknown } } | null } | undefined;
  if (typeof c?.term === "number") return c.term;
  const t = c?.record?.status?.term;
  return typeof t === "number" ? t : null;
}

export class MeshInspector {
  /** The observer for the process's own actor (actor id = source): `createActor(m, { inspect })`. */
  readonly inspect: Inspect;
  private readonly settings: InspectorSettings;
  private readonly clock: Clock;
  private viewing = false;
  private readonly viewers = new Map<string, number>();
  private readonly actors = new Map<string, AnyActorRef>();
  /** Actors registered with `attach`, and their inspection subscription while viewed. */
  private readonly attached = new Map<string, { actor: InspectableActor; sub: { unsubscribe(): void } | null }>();
  private readonly last = new Map<string, Last>();
  private buffer: InspectEntry[] = [];
  private syncPending = false;
  private dropped = 0;
  private seq = 0;
  private timer: TimerHandle | null = null;
  private stopped = false;

  constructor(private readonly opts: MeshInspectorOptions) {
    this.settings = { ...defaultInspectorSettings, ...opts.settings };
    this.clock = opts.clock ?? systemClock;
    this.inspect = this.observer(opts.source);
  }

  get isViewed(): boolean {
    return this.viewing;
  }

  /** An observer for one actor of this process, named `actorId` (e.g. `domain/gw-a`). */
  observer(actorId: string): Inspect {
    return (ev) => {
      // Registration is the only work done while nobody watches: one Map write per actor created.
      if (ev.type === "@xstate.actor") {
        if (ev.rootId === ev.actorRef.sessionId) this.actors.set(actorId, ev.actorRef);
        return;
      }
      if (!this.viewing || ev.type !== "@xstate.snapshot" || ev.rootId !== ev.actorRef.sessionId) return;
      try {
        this.record(actorId, ev.actorRef, ev.event, ev.snapshot, false);
      } catch {
        counters.inc(INSPECT_ERRORS);
      }
    };
  }

  /**
   * Registers an actor (named `actorId`, default: the source) for inspection at no cost while unviewed: its
   * observer is subscribed to the actor's system only while some viewer is present. Re-attaching an id
   * replaces the previous actor (a DomainActor recreated after a takeover).
   */
  attach(actor: InspectableActor, actorId: string = this.opts.source): void {
    try {
      this.attached.get(actorId)?.sub?.unsubscribe();
      this.actors.set(actorId, actor);
      this.attached.set(actorId, { actor, sub: this.viewing ? actor.system.inspect(this.observer(actorId)) : null });
    } catch {
      counters.inc(INSPECT_ERRORS);
    }
  }

  /** Feeds a presence message (inspect.viewer); bad input is counted by the codec and dropped. */
  onPresence(data: Uint8Array): void {
    try {
      const msg = tryDecode(data);
      if (msg?.type !== "inspect.viewer") return;
      const now = this.clock.now();
      if (!this.viewers.has(msg.body.viewer)) this.syncPending = true;
      this.viewers.set(msg.body.viewer, now + msg.body.ttlMs);
      if (!this.viewing && !this.stopped) {
        this.viewing = true;
        this.timer = this.clock.setInterval(() => this.flush(), this.settings.flushMs);
        for (const [id, a] of this.attached) a.sub ??= a.actor.system.inspect(this.observer(id));
      }
    } catch {
      counters.inc(INSPECT_ERRORS);
    }
  }

  /** Publishes what is buffered (called every flushMs while viewed); stops viewing once every viewer is gone. */
  flush(): void {
    try {
      const now = this.clock.now();
      for (const [id, until] of this.viewers) if (until <= now) this.viewers.delete(id);
      if (this.viewers.size === 0) return this.unview();
      if (this.syncPending) this.sync();
      const { maxBatch, maxBatchesPerFlush } = this.settings;
      for (let n = 0; n < maxBatchesPerFlush && this.buffer.length > 0; n++) {
        const entries = this.buffer.length <= maxBatch ? this.buffer : this.buffer.slice(0, maxBatch);
        this.buffer = entries === this.buffer ? [] : this.buffer.slice(maxBatch);
        this.publish(entries, false);
      }
    } catch {
      counters.inc(INSPECT_ERRORS);
    }
  }

  stop(): void {
    this.stopped = true;
    this.unview();
  }

  private unview(): void {
    this.viewing = false;
    for (const a of this.attached.values()) {
      a.sub?.unsubscribe();
      a.sub = null;
    }
    if (this.timer) this.clock.clearInterval(this.timer);
    this.timer = null;
    this.viewers.clear();
    this.buffer = [];
    this.last.clear();
  }

  /** The current state of every live actor, published ahead of anything buffered. */
  private sync(): void {
    this.syncPending = false;
    const entries: InspectEntry[] = [];
    for (const [id, ref] of this.actors) {
      const snap = ref.getSnapshot() as { status?: string };
      if (snap.status === "stopped") {
        this.actors.delete(id);
        this.attached.get(id)?.sub?.unsubscribe();
        this.attached.delete(id);
        continue;
      }
      const e = this.entry(id, ref, { type: "sync" }, snap, true);
      if (e) entries.push(e);
    }
    for (let i = 0; i < entries.length; i += this.settings.maxBatch)
      this.publish(entries.slice(i, i + this.settings.maxBatch), true);
  }

  private record(actorId: string, ref: AnyActorRef, event: { type: string }, snapshot: unknown, sync: boolean): void {
    const e = this.entry(actorId, ref, event, snapshot, sync);
    if (!e) return;
    if (this.buffer.length >= this.settings.maxBuffer) {
      this.buffer.shift();
      this.dropped++;
      counters.inc(INSPECT_DROPPED);
    }
    this.buffer.push(e);
  }

  /** The entry for one processed event, or null when it is a quiet event that changed nothing. */
  private entry(
    actorId: string,
    ref: AnyActorRef,
    event: { type: string },
    snapshot: unknown,
    sync: boolean,
  ): InspectEntry | null {
    const snap = snapshot as { value?: unknown; context?: unknown };
    if (snap.value === undefined) return null; // not a state machine
    const state = stateString(snap.value);
    const term = termOf(snap.context);
    const prev = this.last.get(actorId);
    const changed = prev !== undefined && prev.state !== state;
    this.last.set(actorId, { state, term });
    // A quiet event before the actor's first report (the sync follows within flushMs) is only remembered.
    if (!sync && (!prev || (!changed && prev.term === term)) && this.settings.quietEvents.has(event.type)) return null;
    const payload = sync ? undefined : json(event, 256);
    const context = json(snap.context, 1024);
    const machine = (ref as { logic?: { id?: unknown } }).logic?.id;
    return {
      actor: actorId,
      machine: cut(typeof machine === "string" ? machine : "unknown", 64),
      at: this.clock.wallMs(),
      event: cut(event.type, 128),
      state,
      changed: changed && !sync,
      term,
      ...(payload !== undefined ? { payload } : {}),
      ...(context !== undefined ? { context } : {}),
    };
  }

  private publish(entries: InspectEntry[], sync: boolean): void {
    try {
      const body = {
        source: this.opts.source,
        ...(this.opts.domain ? { domain: this.opts.domain } : {}),
        seq: ++this.seq,
        dropped: this.dropped,
        sync,
        entries,
      };
      this.opts.publish(this.opts.subject, encode("inspect.batch", body));
      this.dropped = 0;
      counters.inc(INSPECT_PUBLISHED, undefined, entries.length);
    } catch {
      counters.inc(INSPECT_ERRORS);
    }
  }
}

type Mesh = {
  publish(subject: string, data: Uint8Array): void;
  subscribe(
    subject: string,
    opts: { callback: (err: unknown, msg: { data: Uint8Array }) => void },
  ): { unsubscribe(): void };
};

export type MeshInspectorHandle = Readonly<{
  /** Registers an actor, observed only while viewed (what services use; see the header). */
  attach(actor: InspectableActor, actorId?: string): void;
  /** The observer for the process's own actor: `createActor(machine, { inspect })` (always subscribed). */
  inspect: Inspect;
  /** An observer for another actor of this process (the coordinator's DomainActors). */
  observer(actorId: string): Inspect;
  inspector: MeshInspector;
  stop(): void;
}>;

/**
 * Wires a MeshInspector to the mesh. `actorSource` is `gateway/<node>`, `node/<node>` (with `domain`: the
 * subjects stay under raven.d.<domain>, which the domain's leaf forwards to the hub) or `coordinator/<id>`.
 */
export function createMeshInspector(
  nc: Mesh,
  opts: { actorSource: string; domain?: string; clock?: Clock; settings?: Partial<InspectorSettings> },
): MeshInspectorHandle {
  const slash = opts.actorSource.indexOf("/");
  const kind = opts.actorSource.slice(0, slash);
  const name = opts.actorSource.slice(slash + 1);
  let subject: string;
  let presence: string;
  if (kind === "coordinator") {
    subject = subjects.coordinatorInspect(name);
    presence = subjects.controlInspectViewer();
  } else if (opts.domain && (kind === "gateway" || kind === "node")) {
    subject = kind === "gateway" ? subjects.gatewayInspect(opts.domain, name) : subjects.nodeInspect(opts.domain, name);
    presence = subjects.inspectViewer(opts.domain);
  } else {
    throw new Error(
      `actorSource ${JSON.stringify(opts.actorSource)} must be gateway/<node> or node/<node> with a domain, or coordinator/<id>`,
    );
  }
  const inspector = new MeshInspector({
    source: opts.actorSource,
    ...(opts.domain ? { domain: opts.domain } : {}),
    subject,
    publish: (s, d) => nc.publish(s, d),
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.settings ? { settings: opts.settings } : {}),
  });
  const sub = nc.subscribe(presence, { callback: (err, m) => !err && inspector.onPresence(m.data) });
  return {
    attach: (actor, actorId) => inspector.attach(actor, actorId),
    inspect: inspector.inspect,
    observer: (id) => inspector.observer(id),
    inspector,
    stop() {
      sub.unsubscribe();
      inspector.stop();
    },
  };
}
