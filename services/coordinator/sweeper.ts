// Sweeper: the coordinator's failure detection over time. Sweeps are scheduled, not periodic: every sweepMs
// while a deadline is near (some candidate's silence could reach its window by a slower sweep), a flip is
// waiting to be told, or anything is being waited out; otherwise a third of the shortest window (100 ms). A
// deadline is still judged within sweepMs of passing, and an idle coordinator wakes 10 times a second, not 50.
//
// Each sweep measures its own lateness and the event loop's utilisation and asks the detector (detector.ts)
// whether silent candidates may be declared dead now, or whether the silence is more likely this process's
// (a stall, a saturated loop) or a path several domains share (a correlated silence, waited out up to a
// bound). It keeps the smoothed utilisation the coordinator sheds registrations by.
import type { Clock, TimerHandle } from "../../shared/clock";
import type { Timings } from "../../shared/config";
import type { Logger } from "../../shared/log";
import { counters } from "../../shared/metrics";
import { judgeSilence, STALL_MS } from "./detector";
import type { HealthTracker } from "./health";

export type SweeperOptions = Readonly<{
  timings: Timings;
  clock: Clock;
  log: Logger;
  tracker: HealthTracker;
  /**
   * After the tracker judged a sweep at `now`, with the candidates whose health flipped: returns whether a
   * next sweep must come soon for the caller's own reasons (a hold waiting to end).
   */
  onSwept: (flipped: Set<string>, now: number) => boolean;
  /** Runs first on every sweep (the coordinator checks its lease's expiry here: one timer, not two). */
  beforeSweep?: (now: number) => void;
}>;

export class Sweeper {
  private timer: TimerHandle | null = null;
  private dueAt = Infinity;
  private lastSweepAt = 0;
  private running = false;
  /** Since when a silence across several domains has been waited out (detector.ts), or null. */
  private deferringSince: number | null = null;
  private lastElu = performance.eventLoopUtilization();
  /** Event-loop utilisation, smoothed over about half a second. */
  loopBusy = 0;

  constructor(private readonly o: SweeperOptions) {}

  /** Starts sweeping from a fresh view: a wait left over from before is not this silence's. */
  start(): void {
    this.running = true;
    this.deferringSince = null;
    this.lastSweepAt = this.o.clock.now();
    this.within(this.o.timings.sweepMs);
  }

  stop(): void {
    this.running = false;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    this.dueAt = Infinity;
  }

  /** Something changed that the next sweep must tell soon (a health flip is pending). */
  soon(): void {
    this.within(this.o.timings.sweepMs);
  }

  private within(ms: number): void {
    const { clock } = this.o;
    const at = clock.now() + ms;
    if (!this.running || (this.timer && this.dueAt <= at)) return;
    if (this.timer) clock.clearTimeout(this.timer);
    this.dueAt = at;
    this.timer = clock.setTimeout(() => {
      this.timer = null;
      let close = true;
      try {
        close = this.sweep();
      } finally {
        // Also after a throw: without sweeps nobody is ever declared dead again, nor the lease's expiry seen.
        this.within(close ? this.o.timings.sweepMs : this.idleMs());
      }
    }, ms);
  }

  /** The sweeps' spacing while no deadline is near: a third of the shortest window. */
  private idleMs(): number {
    const { timings } = this.o;
    return Math.max(timings.sweepMs, Math.floor(timings.gatewayDeadAfterMs / 3));
  }

  /** One sweep; returns whether the next must come soon. */
  private sweep(): boolean {
    const { timings, tracker } = this.o;
    const now = this.o.clock.now();
    this.o.beforeSweep?.(now);
    const late = now - this.dueAt;
    this.dueAt = Infinity;
    const sinceLast = now - this.lastSweepAt;
    this.lastSweepAt = now;
    const elu = performance.eventLoopUtilization(this.lastElu);
    this.lastElu = performance.eventLoopUtilization();
    // Smoothed over ~0.5 s for shedding registrations (whatever the sweeps' spacing): one busy sweep window
    // must not stall them.
    const weight = 1 - Math.pow(0.96, Math.min(sinceLast, 1_000) / timings.sweepMs);
    this.loopBusy = (1 - weight) * this.loopBusy + weight * elu.utilization;
    const silences = tracker.silences(now);
    // Near: an idle-spaced next sweep could find it past its window, and, running up to STALL_MS late without
    // being judged a stall, could miss heartbeats a stall left unread. So every sweep that can declare a death
    // is at most sweepMs after the one before, as with periodic sweeps, and the stall rule guards it alike.
    const reach = this.idleMs() + STALL_MS;
    const deadlineNear = silences.some((c) => c.silentMs + reach >= c.deadAfterMs);
    const verdict = judgeSilence({
      deadAfterMs: timings.gatewayDeadAfterMs,
      candidates: silences,
      sweepLateMs: late,
      loopUtilisation: elu.utilization,
      deferredForMs: this.deferringSince === null ? 0 : now - this.deferringSince,
    });
    if (verdict.kind === "defer") {
      counters.inc("raven_sweeps_deferred_total", { reason: verdict.reason });
      // A stalled or saturated loop has heartbeats waiting unread: judge nothing, not even recoveries, until
      // the next sweep runs after they are processed.
      if (verdict.reason !== "correlated") return true;
      if (this.deferringSince === null) {
        this.deferringSince = now;
        this.o.log.warn(
          { suspects: verdict.suspects },
          "heartbeats late in several domains at once: waiting for them before declaring anyone dead",
        );
      }
    } else if (this.deferringSince !== null) {
      this.o.log.info(
        { waitedMs: Math.round(now - this.deferringSince), dead: verdict.dead },
        "correlated silence over",
      );
      this.deferringSince = null;
    }
    const flipped = tracker.sweep(now, verdict.kind === "judge" ? verdict.dead : []);
    const held = this.o.onSwept(flipped, now);
    return deadlineNear || this.deferringSince !== null || held;
  }
}
