// Polling until something holds, for code that waits on something outside it with no event to wait for: a
// daemon's control socket, a fleet seen from outside (its launcher, benchmarks, tests). The actors themselves
// react to events and never poll this way. Time here is real time.
import { ErrorCode, RavenError } from "./errors";

export type PollOptions = Readonly<{
  /** Between two checks. Default 100 ms. */
  everyMs?: number;
  /** Called before each check: a reason to give up at once (the daemon exited), or null to go on. */
  giveUp?: () => string | null;
  /** The error thrown on timeout or giving up, from the sentence saying which (default: a RavenError TIMEOUT). */
  error?: (reason: string) => Error;
}>;

/**
 * Calls `check` until it returns a value (not undefined/false) and returns that value. A check that throws
 * counts as "not yet"; when `timeoutMs` is up or `giveUp` names a reason, the error names `what` and, on a
 * timeout, the last error thrown.
 */
export async function pollUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: number | PollOptions = {},
): Promise<T> {
  const o: PollOptions = typeof options === "number" ? { everyMs: options } : options;
  const fail = (reason: string) => o.error?.(reason) ?? new RavenError(ErrorCode.Timeout, reason);
  const deadline = performance.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    const stop = o.giveUp?.();
    if (stop) throw fail(`gave up waiting for ${what}: ${stop}`);
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (performance.now() >= deadline) {
      throw fail(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, o.everyMs ?? 100));
  }
}
