// WriteQueue: what keeps Raven's writes to the API server bounded. Keys are marked dirty; a key's write runs
// later and computes what to write at that moment (level-triggered), so any number of marks between two
// writes of a key cost one write. Per key: one write in flight, at least minIntervalMs from one start to
// the next; a failed write is retried after a backoff doubling from backoffMs to maxBackoffMs (a 409
// Conflict included: the next attempt reads the latest object). Over all keys: a token bucket of `qps`
// writes a second with `burst` tokens, so a takeover that finds every Gateway stale, or a flapping fleet,
// cannot flood the API server. Keys are served in the order they became due.
import type { Clock, TimerHandle } from "../../../shared/clock";

export type WriteQueueOptions = Readonly<{
  minIntervalMs: number;
  qps: number;
  burst: number;
  backoffMs: number;
  maxBackoffMs: number;
  clock: Clock;
  /** Does the key's write; rejects to have it retried. */
  write: (key: string) => Promise<void>;
  onError: (key: string, err: unknown, attempt: number) => void;
}>;

type KeyState = { lastStart: number; failures: number; inFlight: boolean; dirty: boolean; notBefore: number };

export class WriteQueue {
  private readonly keys = new Map<string, KeyState>();
  private tokens: number;
  private refilledAt: number;
  private timer: TimerHandle | null = null;
  private timerAt = Infinity;
  private stopped = false;
  readonly stats = { writes: 0, failures: 0 };

  constructor(private readonly opts: WriteQueueOptions) {
    this.tokens = opts.burst;
    this.refilledAt = opts.clock.now();
  }

  /** The key's state should be written (again). */
  mark(key: string): void {
    if (this.stopped) return;
    let s = this.keys.get(key);
    if (!s) {
      s = { lastStart: -Infinity, failures: 0, inFlight: false, dirty: false, notBefore: 0 };
      this.keys.set(key, s);
    }
    s.dirty = true;
    // Marks made together are served by one pass.
    this.arm(this.opts.clock.now());
  }

  /** Keys waiting for a write or being written. */
  get pending(): number {
    let n = 0;
    for (const s of this.keys.values()) if (s.dirty || s.inFlight) n++;
    return n;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.opts.burst, this.tokens + ((now - this.refilledAt) * this.opts.qps) / 1000);
    this.refilledAt = now;
  }

  private dueAt(s: KeyState): number {
    return Math.max(s.lastStart + this.opts.minIntervalMs, s.notBefore);
  }

  private pump(): void {
    if (this.stopped) return;
    const now = this.opts.clock.now();
    this.refill(now);
    const due: [string, KeyState][] = [];
    for (const [key, s] of this.keys) {
      if (s.inFlight) continue;
      if (s.dirty) due.push([key, s]);
      // A clean key is forgotten once its interval has passed (its last start no longer matters).
      else if (s.failures === 0 && this.dueAt(s) <= now) this.keys.delete(key);
    }
    due.sort(([, a], [, b]) => this.dueAt(a) - this.dueAt(b));
    let next = Infinity;
    for (const [key, s] of due) {
      const at = this.dueAt(s);
      if (at > now) {
        next = Math.min(next, at);
        break;
      }
      if (this.tokens < 1) {
        next = Math.min(next, now + ((1 - this.tokens) * 1000) / this.opts.qps);
        break;
      }
      this.tokens -= 1;
      this.start(key, s, now);
    }
    this.arm(next);
  }

  private start(key: string, s: KeyState, now: number): void {
    s.dirty = false;
    s.inFlight = true;
    s.lastStart = now;
    this.stats.writes++;
    this.opts.write(key).then(
      () => {
        s.failures = 0;
        s.notBefore = 0;
        this.settle(s);
      },
      (err: unknown) => {
        s.failures++;
        this.stats.failures++;
        this.opts.onError(key, err, s.failures);
        const backoff = Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** (s.failures - 1));
        s.notBefore = this.opts.clock.now() + backoff;
        s.dirty = true;
        this.settle(s);
      },
    );
  }

  private settle(s: KeyState): void {
    s.inFlight = false;
    this.pump();
  }

  private arm(at: number): void {
    if (at === Infinity || at >= this.timerAt) return;
    if (this.timer) this.opts.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.opts.clock.setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Infinity;
        this.pump();
      },
      Math.max(1, at - this.opts.clock.now()),
    );
  }
}
