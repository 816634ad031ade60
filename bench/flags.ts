// What the benchmark entrypoints share besides measuring: flag values parsed into numbers (a bad one is a
// ConfigError naming the flag), and cleanup that runs once however many paths (end, error, signal) call it.
import { ConfigError } from "../shared/errors";
import { GIB, MIB } from "./proxy-lib";

/** "1073741824", "1GiB", "64MiB", "512KiB" -> bytes. */
export function parseBytes(text: string, key: string): number {
  const m = /^(\d+)\s*(KiB|MiB|GiB)?$/i.exec(text.trim());
  const unit = { kib: 1024, mib: MIB, gib: GIB }[(m?.[2] ?? "").toLowerCase() as "kib" | "mib" | "gib"] ?? 1;
  const v = m ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new ConfigError(key, `must be a byte count like 1073741824, 1GiB or 64MiB, got ${JSON.stringify(text)}`);
  return v;
}

export function integerFlag(text: string, key: string, min: number): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < min)
    throw new ConfigError(key, `must be an integer >= ${min}, got ${JSON.stringify(text)}`);
  return v;
}

export function secondsFlag(text: string, key: string): number {
  const v = Number(text);
  if (!(v > 0) || !Number.isFinite(v))
    throw new ConfigError(key, `must be a positive number of seconds, got ${JSON.stringify(text)}`);
  return v;
}

/** Runs `stop` at most once, however many times it is called. */
export function once(stop: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null;
  return () => (p ??= stop());
}
