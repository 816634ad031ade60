// A small validator combinator set for wire messages: each schema checks an unknown value and returns it
// typed, or throws InvalidMessageError naming the path of the first bad field ("gw.hb.active[0]: expected
// ..."). Kept here rather than pulling in a schema library: the wire types are few and flat.
//
// The happy path allocates nothing for paths: a combinator passes only its own key or index down, and the
// full path is assembled from segments while a FieldError travels up — only when something is wrong.
import { InvalidMessageError } from "../errors";

type Segment = string | number;
export type Schema<T> = (value: unknown, path: Segment) => T;
export type Infer<S> = S extends Schema<infer T> ? T : never;

function formatPath(segments: readonly Segment[]): string {
  return segments.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? s : `.${s}`)).join("");
}

/** An InvalidMessageError that knows the path of the bad field, as segments. */
export class FieldError extends InvalidMessageError {
  constructor(
    readonly segments: readonly Segment[],
    readonly detail: string,
  ) {
    super(`${formatPath(segments)}: ${detail}`);
    this.name = "InvalidMessageError";
  }
}

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))?.slice(0, 60) ?? typeof value;
  } catch {
    return typeof value;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== "object" || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

function fail(path: Segment, expected: string, value: unknown): never {
  const shown = show(value);
  throw new FieldError([path], `expected ${expected}, got ${shown}`);
}

/** Runs a child schema; a FieldError from it gets this level's segment in front. */
function within<T>(path: Segment, run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof FieldError) throw new FieldError([path, ...err.segments], err.detail);
    throw err;
  }
}

export const str =
  (opts: { max?: number; pattern?: RegExp; check?: (s: string) => boolean; what?: string } = {}): Schema<string> =>
  (v, path) => {
    const max = opts.max ?? 1024;
    if (
      typeof v !== "string" ||
      v.length > max ||
      (opts.pattern && !opts.pattern.test(v)) ||
      (opts.check && !opts.check(v))
    ) {
      return fail(path, `${opts.what ?? "a string"} of at most ${max} chars`, v);
    }
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
    const out: T[] = new Array(v.length);
    for (let i = 0; i < v.length; i++) {
      try {
        out[i] = item(v[i], i);
      } catch (err) {
        if (err instanceof FieldError) throw new FieldError([path, ...err.segments], err.detail);
        throw err;
      }
    }
    return out;
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
    if (!isPlainObject(v)) return fail(path, "a map", v);
    const entries = Object.entries(v);
    if (entries.length > max) return fail(path, `a map of at most ${max} entries`, entries.length);
    const out: Record<string, T> = {};
    for (const [k, x] of entries) out[k] = within(path, () => value(x, k));
    return out;
  };

type Shape = Record<string, Schema<unknown>>;
type FromShape<S extends Shape> = { [K in keyof S as undefined extends Infer<S[K]> ? never : K]: Infer<S[K]> } & {
  [K in keyof S as undefined extends Infer<S[K]> ? K : never]?: Infer<S[K]>;
};

/** An object schema that also knows its field order (the positional wire layout, see codec.ts). */
export type ObjSchema<T> = Schema<T> & { readonly fields: readonly string[] };

/** An object with exactly these fields (unknown fields are dropped, so newer peers may add optional ones). */
export const obj = <S extends Shape>(shape: S): ObjSchema<FromShape<S>> => {
  const fields = Object.keys(shape);
  const validators = fields.map((k) => shape[k]!);
  const schema = (v: unknown, path: Segment) => {
    if (!isPlainObject(v)) return fail(path, "an object", v);
    const src = v;
    const out: Record<string, unknown> = {};
    for (let i = 0; i < fields.length; i++) {
      const key = fields[i]!;
      let parsed: unknown;
      try {
        parsed = validators[i]!(src[key], key);
      } catch (err) {
        if (err instanceof FieldError) throw new FieldError([path, ...err.segments], err.detail);
        throw err;
      }
      if (parsed !== undefined) out[key] = parsed;
    }
    return out as FromShape<S>;
  };
  return Object.assign(schema, { fields });
};
