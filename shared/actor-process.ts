// The tail every actor process's entrypoint shares (coordinator, gateway actor, node actor): /metrics on the
// port asked for, and one graceful stop on SIGINT/SIGTERM (or when the launcher's pipe closes) that runs the
// actor's own stop, then stops its inspector, closes the metrics server and drains its NATS connections, in
// that order, within graceMs (onShutdown exits non-zero after it).
import { describeError } from "./errors";
import type { Logger } from "./log";
import { startMetricsServer } from "./metrics-server";
import type { NatsConnection } from "./nats";
import { onShutdown } from "./process";

export type ActorProcess = Readonly<{
  log: Logger;
  /** From metricsPortOf (parsed with the other flags); 0 = no /metrics. */
  metricsPort: number;
  connections: readonly NatsConnection[];
  inspector?: { stop(): void };
  /** The actor's own graceful stop (drain, release, unregister), before the shared teardown. */
  stop: () => Promise<void>;
  graceMs?: number;
}>;

export async function serveActorProcess(p: ActorProcess): Promise<void> {
  const metrics = p.metricsPort
    ? await startMetricsServer({ port: p.metricsPort }).catch(
        (err) => void p.log.warn({ err: describeError(err) }, "no /metrics"),
      )
    : undefined;
  if (metrics) p.log.info({ metrics: metrics.url }, "serving metrics");
  onShutdown(async () => {
    await p.stop();
    p.inspector?.stop();
    await metrics?.close();
    for (const nc of p.connections) await nc.drain().catch(() => nc.close());
  }, p.graceMs);
}
