// Entrypoint helpers: the only place that exits a process. `runMain` prints a clear one-line error for bad
// input (RavenError) and a stack for bugs; `onShutdown` runs the cleanup once on SIGINT/SIGTERM.
import { RavenError, describeError } from "./errors";

export function runMain(main: () => Promise<void>): void {
  main().catch((err) => {
    if (err instanceof RavenError) process.stderr.write(`error: ${describeError(err)}\n`);
    else process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}

export function onShutdown(cleanup: () => Promise<void>, graceMs = 5_000): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(1), graceMs);
    force.unref();
    cleanup().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`error during ${signal} shutdown: ${describeError(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  // A child of the fleet launcher gets a stdin pipe from it; when the launcher dies, the pipe closes and the
  // child stops too instead of lingering as an orphan.
  if (process.env.RAVEN_EXIT_WITH_PARENT === "1") {
    process.stdin.on("end", () => handler("SIGTERM"));
    process.stdin.on("error", () => handler("SIGTERM"));
    process.stdin.resume();
  }
}

/** A process-unique id: stable name plus pid and a random suffix, so a restarted process is a new holder. */
export function instanceId(name: string): string {
  return `${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}
