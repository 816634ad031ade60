// pino JSON logs. Every service logs through a child carrying its identity (service, actor id, node, domain);
// actors add their own bindings (term, unit) with `.child`. Every line carries `actor`, `domain` and `term`:
// when neither the bindings nor the call give one, the mixin adds it — the term from the `term` source the
// entrypoint passes (the GatewayActor's highest term seen), else null (a node actor has no term; the
// coordinator's process-wide lines belong to no domain). Level from RAVEN_LOG_LEVEL, read once here at the edge.
import { pino, type Logger } from "pino";

export type { Logger };

export type LoggerOptions = Readonly<{ term?: () => number | null }>;

const IDENTITY = ["actor", "domain", "term"] as const;

export function createLogger(bindings: Record<string, string | number | undefined>, opts: LoggerOptions = {}): Logger {
  const level = process.env.RAVEN_LOG_LEVEL ?? "info";
  const clean = Object.fromEntries(Object.entries(bindings).filter(([, v]) => v !== undefined));
  return pino({
    level,
    base: { pid: process.pid, ...clean },
    mixin(obj, _level, logger) {
      const bound = logger.bindings();
      const out: Record<string, unknown> = {};
      for (const key of IDENTITY) {
        if (key in bound || key in obj || key in clean) continue;
        out[key] = key === "term" ? safeTerm(opts.term) : null;
      }
      return out;
    },
  });
}

function safeTerm(term: (() => number | null) | undefined): number | null {
  try {
    return term?.() ?? null;
  } catch {
    return null; // the source is not ready yet (logged before the actor exists)
  }
}

/** A logger that drops everything, for tests and benchmarks that drive services in-process. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
