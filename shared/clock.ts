// Time as a dependency. Domain code takes a Clock; processes pass `systemClock`, tests a ManualClock.
// `now()` is monotonic milliseconds (performance.now based) for deadlines; `wallMs()` is epoch milliseconds
// for what goes on the wire and in records, where peers on the same host compare it.

export type TimerHandle = { readonly id: number };

export interface Clock {
  now(): number;
  wallMs(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

let nextSystemTimerId = 1;
const systemTimers = new Map<number, NodeJS.Timeout>();

export const systemClock: Clock = {
  now: () => performance.now(),
  wallMs: () => Date.now(),
  setTimeout(fn, ms) {
    const id = nextSystemTimerId++;
    systemTimers.set(
      id,
      setTimeout(() => {
        systemTimers.delete(id);
        fn();
      }, ms),
    );
    return { id };
  },
  clearTimeout(handle) {
    const t = systemTimers.get(handle.id);
    if (t) clearTimeout(t);
    systemTimers.delete(handle.id);
  },
  setInterval(fn, ms) {
    const id = nextSystemTimerId++;
    systemTimers.set(id, setInterval(fn, ms));
    return { id };
  },
  clearInterval(handle) {
    const t = systemTimers.get(handle.id);
    if (t) clearInterval(t);
    systemTimers.delete(handle.id);
  },
};

/** A clock that moves only when told to; timers fire in deadline order during `advance`. */
export class ManualClock implements Clock {
  private t = 0;
  private wallOffset: number;
  private seq = 1;
  private timers = new Map<number, { at: number; fn: () => void; every?: number }>();

  constructor(startWallMs = 1_700_000_000_000) {
    this.wallOffset = startWallMs;
  }

  now(): number {
    return this.t;
  }
  wallMs(): number {
    return this.wallOffset + this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.seq++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return { id };
  }
  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle.id);
  }
  setInterval(fn: () => void, ms: number): TimerHandle {
    const id = this.seq++;
    this.timers.set(id, { at: this.t + Math.max(1, ms), fn, every: Math.max(1, ms) });
    return { id };
  }
  clearInterval(handle: TimerHandle): void {
    this.timers.delete(handle.id);
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && timer.at < nextAt) {
          nextAt = timer.at;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const timer = this.timers.get(nextId)!;
      this.t = Math.max(this.t, timer.at);
      if (timer.every) timer.at += timer.every;
      else this.timers.delete(nextId);
      timer.fn();
    }
    this.t = end;
  }
}

/** Resolves after `ms` on `clock`, or at once when `signal` aborts. */
export function sleep(ms: number, clock: Clock, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const onAbort = () => {
      clock.clearTimeout(t);
      resolve();
    };
    const t = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
