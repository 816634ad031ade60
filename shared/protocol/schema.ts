// A small validator combinator set for wire messages: each schema checks an unknown value and returns it
// typed, or throws InvalidMessageError naming the path of the first bad field. Kept here rather than pulling
// in a schema library: the wire types are few and flat.
import { InvalidMessageError } from "../errors";

export type Schema<T> = (value: unknown, path: string) => T;
export type Infer<S> = S extends Schema<infer T> ? T : never;

function fail(path: string, expected: string, value: unknown): never {
  const shown = value === undefined ? "nothing" : JSON.stringify(value)?.slice(0, 60) ?? typeof value;
  throw new InvalidMessageError(`${path}: expected ${expected}, got ${shown}`);
}

export const str =
  (opts: { max?: number; pattern?: RegExp; check?: (s: string) => boolean; what?: string } = {}): Schema<string> =>
  (v, path) => {
    const what = opts.what ?? "a string";
    if (typeof v !== "string") return fail(path, what, v);
    if (v.length > (opts.max ?? 1024)) return fail(path, `${what} of at most ${opts.max ?? 1024} chars`, v);
    if (opts.pattern && !opts.pattern.test(v)) return fail(path, what, v);
    if (opts.check && !opts.check(v)) return fail(path, what, v);
    return v;
  };

export const int =
  (min = 0, max = Number.MAX_SAFE_INTEGER): Schema<number> =>
  (v, path) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      return fail(path, `an integer in [${min}, ${max}]`, v);
    }
    return v;
  };

export const bool: Schema<boolean> = (v, path) => (typeof v === "boolean" ? v : fail(path, "a boolean", v));

export const literal =
  <const L extends string>(...values: L[]): Schema<L> =>
  (v, path) =>
    (values as unknown[]).includes(v) ? (v as L) : fail(path, `one of ${values.join("|")}`, v);

export const arr =
  <T>(item: Schema<T>, max = 1024): Schema<T[]> =>
  (v, path) => {
    if (!Array.isArray(v)) return fail(path, "an array", v);
    if (v.length > max) return fail(path, `an array of at most ${max} items`, v.length);
    return v.map((x, i) => item(x, `${path}[${i}]`));
  };

export const opt =
  <T>(inner: Schema<T>): Schema<T | undefined> =>
  (v, path) =>
    v === undefined || v === null ? undefined : inner(v, path);

export const nullable =
  <T>(inner: Schema<T>): Schema<T | null> =>
  (v, path) =>
    v === null || v === undefined ? null : inner(v, path);

export const record =
  <T>(value: Schema<T>, max = 256): Schema<Record<string, T>> =>
  (v, path) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(path, "a map", v);
    const entries = Object.entries(v);
    if (entries.length > max) return fail(path, `a map of at most ${max} entries`, entries.length);
    const out: Record<string, T> = {};
    for (const [k, x] of entries) out[k] = value(x, `${path}.${k}`);
    return out;
  };

type Shape = Record<string, Schema<unknown>>;
type FromShape<S extends Shape> = { [K in keyof S as undefined extends Infer<S[K]> ? never : K]: Infer<S[K]> } & {
  [K in keyof S as undefined extends Infer<S[K]> ? K : never]?: Infer<S[K]>;
};

/** An object with exactly these fields (unknown fields are dropped, so newer peers may add optional ones). */
export const obj =
  <S extends Shape>(shape: S): Schema<FromShape<S>> =>
  (v, path) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(path, "an object", v);
    const src = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(shape)) {
      const parsed = shape[key]!(src[key], `${path}.${key}`);
      if (parsed !== undefined) out[key] = parsed;
    }
    return out as FromShape<S>;
  };
