// Flapping, as `raven status` shows it: how many times this coordinator raised each unit's term within the
// last minute. A sliding window of raise times per unit key, on the monotonic time the caller passes in (it
// holds no clock, so tests drive it with plain numbers).
//
// Memory stays bounded: a unit's times older than the window are dropped whenever it is recorded or
// counted; at most once per window a record also sweeps every unit, so one that was removed from the
// inventory or went quiet is forgotten by the first record a window later (memory only grows on a record,
// so without records nothing is left to grow); and a unit keeps at most `maxPerUnit` times (a count at
// that cap means "at least").
//
// Only raises this process wrote are counted. A standby that takes over starts with an empty window, and
// one that was active before keeps its own raises but never sees the other coordinator's: for up to a
// minute after a takeover the count under-reports (the reply's activeSince says since when). That is fine
// for an operator's flapping hint. (Counting term changes seen in the Gateway KV watch instead would cover
// a takeover too, at the price of judging "raised" from records written by another process.)

/** The window behind DomainStatus.termChangesLastMinute: the wire name fixes it at one minute. */
export const TERM_CHANGE_WINDOW_MS = 60_000;
/** Far above any real election rate (each one is a compare-and-swap write and a handover); a bound, not a limit. */
export const MAX_TERM_CHANGES_PER_UNIT = 1_000;

export class TermChangeWindow {
  /** Unit key -> raise times within the window, oldest first (times come from a monotonic clock). */
  private readonly raises = new Map<string, number[]>();
  private lastSweepAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly windowMs = TERM_CHANGE_WINDOW_MS,
    private readonly maxPerUnit = MAX_TERM_CHANGES_PER_UNIT,
  ) {}

  /** The unit's term was raised at `at`. */
  record(unit: string, at: number): void {
    if (at - this.lastSweepAt >= this.windowMs) {
      this.lastSweepAt = at;
      for (const [key, times] of this.raises) this.expire(key, times, at);
    }
    const times = this.raises.get(unit);
    if (!times) {
      this.raises.set(unit, [at]);
      return;
    }
    times.push(at);
    if (times.length > this.maxPerUnit) times.splice(0, times.length - this.maxPerUnit);
  }

  /** Raises of the unit's term in (now - windowMs, now]. */
  count(unit: string, now: number): number {
    const times = this.raises.get(unit);
    return times ? this.expire(unit, times, now) : 0;
  }

  /** Units currently holding raise times (for tests of the memory bound). */
  get units(): number {
    return this.raises.size;
  }

  /** Drops the unit's times that left the window (the unit itself when none is left); returns how many stay. */
  private expire(unit: string, times: number[], now: number): number {
    let old = 0;
    while (old < times.length && now - times[old]! >= this.windowMs) old++;
    if (old === times.length) {
      this.raises.delete(unit);
      return 0;
    }
    if (old > 0) times.splice(0, old);
    return times.length;
  }
}
