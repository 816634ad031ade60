// KV record access with compare-and-swap. Every durable write in Raven is `casPut`: it succeeds only if the
// key is still at the revision the writer read (0 = never written), so two writers can never silently
// overwrite each other; the loser gets a CasConflictError, reads again and decides again.
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { Clock } from "./clock";
import type { Logger } from "./log";
import { CasConflictError, describeError } from "./errors";
import { encodeJson, textDecoder } from "./nats";

/** A stored value with its revision. `value` is null for a missing or deleted key (revision still counts). */
export type Versioned<T> = { value: T | null; revision: number };

function isWrongLastSequence(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return e?.code === 10071 || (typeof e?.message === "string" && e.message.includes("wrong last sequence"));
}

export async function casPut(kv: KV, key: string, value: unknown, revision: number): Promise<number> {
  try {
    return await kv.put(key, encodeJson(value), { previousSeq: revision });
  } catch (err) {
    if (isWrongLastSequence(err)) throw new CasConflictError(key, { cause: err });
    throw err;
  }
}

/** Reads and parses a JSON record; a value that does not parse is reported through `parse` throwing. */
export async function readJson<T>(kv: KV, key: string, parse: (raw: unknown) => T): Promise<Versioned<T>> {
  const entry = await kv.get(key);
  if (!entry) return { value: null, revision: 0 };
  if (entry.operation !== "PUT") return { value: null, revision: entry.revision };
  return { value: parse(JSON.parse(textDecoder.decode(entry.value))), revision: entry.revision };
}

/** Every key of a bucket with its parsed value; unparsable values are handed to `onBad` and skipped. */
export async function readAll<T>(
  kv: KV,
  filter: string,
  parse: (raw: unknown, key: string) => T,
  onBad: (key: string, err: unknown) => void,
): Promise<Map<string, Versioned<T>>> {
  const out = new Map<string, Versioned<T>>();
  const keys = await kv.keys(filter);
  const names: string[] = [];
  for await (const k of keys) names.push(k);
  await Promise.all(
    names.map(async (k) => {
      try {
        const v = await readJson(kv, k, (raw) => parse(raw, k));
        if (v.value !== null) out.set(k, v);
      } catch (err) {
        onBad(k, err);
      }
    }),
  );
  return out;
}

/**
 * Follows every change of a bucket (current values first) until `stop()`, restarting the watch 250 ms after
 * it ends or fails (a hub restart ends it). `apply` runs synchronously per entry, in order.
 */
export function watchBucket(
  kv: KV,
  apply: (e: KvWatchEntry) => void,
  opts: { clock: Clock; log: Logger; what: string },
): { stop(): void } {
  let stopped = false;
  let current: { stop(): void } | null = null;
  void (async () => {
    while (!stopped) {
      try {
        const iter = await kv.watch();
        current = iter;
        if (stopped) iter.stop();
        for await (const entry of iter) {
          if (stopped) break;
          apply(entry);
        }
      } catch (err) {
        if (!stopped) opts.log.warn({ err: describeError(err), bucket: opts.what }, "KV watch failed; restarting");
      }
      current = null;
      if (!stopped) await new Promise((r) => opts.clock.setTimeout(() => r(undefined), 250));
    }
  })();
  return {
    stop() {
      stopped = true;
      current?.stop();
    },
  };
}
