// JSON value types and small helpers shared by the Kubernetes API test double: a type guard that narrows
// `JSON.parse` output without casts, deep equality and cloning. Pure functions, no I/O.

export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function isJson(v: unknown): v is Json {
  if (v === null || typeof v === "boolean" || typeof v === "string") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(isJson);
  if (typeof v === "object") return Object.values(v).every(isJson);
  return false;
}

/** Parses text as JSON; undefined when it is not valid JSON. */
export function parseJson(text: string): Json | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isJson(v) ? v : undefined;
}

export function clone<T extends Json>(v: T): T {
  return structuredClone(v);
}

export function deepEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

export function str(v: Json | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

export function objectAt(v: Json | undefined): JsonObject | undefined {
  return isObject(v) ? v : undefined;
}

/** The object's `metadata`, created if missing. */
export function meta(o: JsonObject): JsonObject {
  const m = o["metadata"];
  if (isObject(m)) return m;
  const fresh: JsonObject = {};
  o["metadata"] = fresh;
  return fresh;
}

/** `metadata.labels` as a string map (non-string values ignored). */
export function labelsOf(o: JsonObject): Map<string, string> {
  const out = new Map<string, string>();
  const labels = objectAt(objectAt(o["metadata"])?.["labels"]);
  for (const [k, v] of Object.entries(labels ?? {})) if (typeof v === "string") out.set(k, v);
  return out;
}
