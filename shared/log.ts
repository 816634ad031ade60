// pino JSON logs. Every service logs through a child carrying its identity (service, node, domain); actors add
// their own bindings (term, actor id) with `.child`. Level from RAVEN_LOG_LEVEL, read once here at the edge.
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(bindings: Record<string, string | number | undefined>): Logger {
  const level = process.env.RAVEN_LOG_LEVEL ?? "info";
  const clean = Object.fromEntries(Object.entries(bindings).filter(([, v]) => v !== undefined));
  return pino({ level, base: { pid: process.pid, ...clean } });
}

/** A logger that drops everything, for tests and benchmarks that drive services in-process. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
