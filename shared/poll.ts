// Polling until something holds, for the harness around the system (benchmarks, tests) that waits on a fleet
// from outside: the actors themselves react to events and never poll this way. Time here is real time.
import { ErrorCode, RavenError } from "./errors";

/**
 * Calls `check` every `everyMs` until it returns a value (not undefined/false) and returns that value. A
 * check that throws counts as "not yet"; when `timeoutMs` is up, a RavenError (code TIMEOUT) names `what`
 * and the last error thrown.
 */
export async function pollUntil<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false> | T | undefined | false, everyMs = 100): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastErr: unknown;
  while (performance.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new RavenError(ErrorCode.Timeout, `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ""}`);
}
