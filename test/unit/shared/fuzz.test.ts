// Fuzzing the edge: random bytes, mutations of valid messages of every type, and random envelopes go through
// `decode`, `decodeAs` (for every type) and `tryDecode`. Each call must either return a message that
// re-validates or throw a typed RavenError; tryDecode never throws; the rejected counter grows by exactly one
// per rejection, under the rejection's reason. The PRNG is seeded: set RAVEN_FUZZ_SEED to replay a failure.
import { isDeepStrictEqual } from "node:util";
import { Packr } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  InvalidMessageError,
  MalformedMessageError,
  OversizedMessageError,
  RavenError,
  UnknownTypeError,
  UnknownVersionError,
} from "../../../shared/errors";
import { counters } from "../../../shared/metrics";
import {
  PROTOCOL_VERSION,
  REJECTED_COUNTER,
  decode,
  decodeAs,
  encode,
  messageSchemas,
  tryDecode,
  type Message,
  type MessageType,
} from "../../../shared/protocol";
import { frameValue, fullBodies, messageTypes, minimalBodies } from "./fixtures";

const SEED = Number(process.env.RAVEN_FUZZ_SEED ?? 0x5eed_2026) >>> 0;
const RANDOM_BUFFERS = 20_000;
const MUTATIONS_PER_TYPE = 1_000; // x 8 types
const RANDOM_ENVELOPES = 5_000;
/**
 * A hang detector, not a benchmark: a call taking this long is a pathological slow path (an infinite loop would
 * also trip vitest's test timeout). Generous, because a loaded 2-core CI box can stall any call for 100s of ms.
 */
const MAX_CALL_MS = 5_000;

/** mulberry32: small, fast, good enough to drive a fuzzer, and reproducible from one 32-bit seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const u32 = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = () => u32() / 4294967296;
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const bytes = (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const r = u32();
      out[i] = r;
      if (i + 1 < n) out[i + 1] = r >>> 8;
      if (i + 2 < n) out[i + 2] = r >>> 16;
      if (i + 3 < n) out[i + 3] = r >>> 24;
    }
    return out;
  };
  return { next, int, pick, bytes };
}
type Rng = ReturnType<typeof prng>;

const KNOWN_ERRORS = [
  MalformedMessageError,
  UnknownVersionError,
  UnknownTypeError,
  InvalidMessageError,
  OversizedMessageError,
];

function rejectionSnapshot(): Map<string, number> {
  const out = new Map<string, number>();
  for (const [key, value] of Object.entries(counters.snapshot())) {
    if (key.startsWith(`${REJECTED_COUNTER}{`)) out.set(key, value);
  }
  return out;
}
const reasonKey = (reason: string) => `${REJECTED_COUNTER}{reason=${JSON.stringify(reason)}}`;

/** Hot-path assertion: vitest's `expect` costs more than the call under test, so plain checks here. */
function check(cond: boolean, what: () => string): asserts cond {
  if (!cond) throw new Error(`seed=${SEED}: ${what()}`);
}
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex").slice(0, 200);

class Harness {
  readonly expected = new Map<string, number>();
  accepted = 0;
  rejectedCalls = 0;
  slowest = 0;
  private readonly before = rejectionSnapshot();

  constructor(private readonly label: string) {}

  private count(reason: string) {
    this.expected.set(reasonKey(reason), (this.expected.get(reasonKey(reason)) ?? 0) + 1);
    this.rejectedCalls++;
  }

  private timed<T>(fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.slowest = Math.max(this.slowest, performance.now() - t0);
    }
  }

  private checkError(err: unknown, input: Uint8Array, via: string): RavenError {
    const where = () => `${this.label} ${via} input=${hex(input)}`;
    check(err instanceof RavenError, () => `${where()}: threw a non-RavenError: ${String(err)}`);
    check(
      KNOWN_ERRORS.some((cls) => err instanceof cls),
      () => `${where()}: unexpected error class ${err.name}`,
    );
    return err;
  }

  private checkMessage(msg: Message, input: Uint8Array) {
    const where = () => `${this.label} input=${hex(input)}`;
    check(Object.hasOwn(messageSchemas, msg.type), () => `${where()}: unknown type ${msg.type}`);
    // What decode returns is in normal form: validating it again changes nothing, and re-encoding it is stable.
    const again = messageSchemas[msg.type](msg.body, msg.type);
    check(isDeepStrictEqual(again, msg.body), () => `${where()}: body does not re-validate to itself`);
    check(
      isDeepStrictEqual(decode(encode(msg.type, msg.body)), msg),
      () => `${where()}: re-encoding changes the message`,
    );
  }

  /**
   * Feeds one input to decode, decodeAs and tryDecode, checking that they agree. An accepted input goes to
   * decodeAs for every type (one must return the body, the rest refuse it as WRONG_TYPE). A rejected input
   * goes to decodeAs for one type, rotating, so every type sees a share of the bad inputs: decodeAs refuses
   * before it looks at the type, and repeating the same failing decode for all eight types would only
   * multiply the runtime.
   */
  feed(input: Uint8Array, rotation: number) {
    let msg: Message | undefined;
    let code: string | undefined;
    try {
      msg = this.timed(() => decode(input));
    } catch (err) {
      code = this.checkError(err, input, "decode").code;
      this.count(code);
    }
    if (msg) {
      this.accepted++;
      this.checkMessage(msg, input);
    }

    const types = msg ? messageTypes : [messageTypes[rotation % messageTypes.length]!];
    for (const type of types) {
      let body: unknown;
      try {
        body = this.timed(() => decodeAs(input, type));
      } catch (err) {
        const e = this.checkError(err, input, `decodeAs(${type})`);
        if (msg) {
          check(msg.type !== type, () => `decodeAs(${type}) refused a ${msg.type} it should accept: ${hex(input)}`);
          check(e instanceof InvalidMessageError, () => `decodeAs(${type}) on a ${msg.type}: ${e.name}`);
          this.count("WRONG_TYPE");
        } else {
          check(e.code === code, () => `decodeAs(${type}) said ${e.code}, decode said ${code}: ${hex(input)}`);
          this.count(code!);
        }
        continue;
      }
      check(msg?.type === type, () => `decodeAs(${type}) accepted what decode did not: ${hex(input)}`);
      check(isDeepStrictEqual(body, msg.body), () => `decodeAs(${type}) and decode disagree on ${hex(input)}`);
    }

    let rejections = 0;
    let result: Message | undefined;
    try {
      result = this.timed(() =>
        tryDecode(input, (err) => {
          rejections++;
          check(err.code === code, () => `tryDecode rejected with ${err.code}, decode with ${code}: ${hex(input)}`);
        }),
      );
    } catch (err) {
      throw new Error(`${this.label} seed=${SEED}: tryDecode threw ${String(err)} on ${hex(input)}`);
    }
    if (msg) {
      check(isDeepStrictEqual(result, msg), () => `tryDecode and decode disagree on ${hex(input)}`);
      check(rejections === 0, () => "tryDecode called onReject for a good message");
    } else {
      check(result === undefined, () => `tryDecode returned a message decode refused: ${hex(input)}`);
      check(rejections === 1, () => `tryDecode called onReject ${rejections} times`);
      this.count(code!);
    }
  }

  /** The rejected counter grew by exactly the rejections seen, reason by reason. */
  verifyCounters() {
    const after = rejectionSnapshot();
    const keys = new Set([...after.keys(), ...this.before.keys(), ...this.expected.keys()]);
    let growth = 0;
    for (const key of keys) {
      const delta = (after.get(key) ?? 0) - (this.before.get(key) ?? 0);
      growth += delta;
      expect(delta, `${this.label} seed=${SEED} ${key}`).toBe(this.expected.get(key) ?? 0);
    }
    expect(growth).toBe(this.rejectedCalls);
    expect(this.slowest, `${this.label}: slowest call`).toBeLessThan(MAX_CALL_MS);
  }
}

const valid: Uint8Array[] = messageTypes.flatMap((t) => [encode(t, fullBodies[t]), encode(t, minimalBodies[t])]);
const validOf = (type: MessageType) => [encode(type, fullBodies[type]), encode(type, minimalBodies[type])];

/** Bytes that are markers in msgpack: containers, length prefixes, extension heads, nil/bool, never-used. */
const INTERESTING = [
  0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc7, 0xca, 0xcb, 0xcc, 0xcf, 0xd0,
  0xd3, 0xd4, 0xd6, 0xd8, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
];

function mutate(rng: Rng, src: Uint8Array): Uint8Array {
  const b = Uint8Array.from(src);
  switch (rng.int(7)) {
    case 0: {
      // bit flips
      const flips = 1 + rng.int(4);
      for (let i = 0; i < flips; i++) b[rng.int(b.length)]! ^= 1 << rng.int(8);
      return b;
    }
    case 1:
      return b.slice(0, rng.int(b.length)); // truncation
    case 2: {
      // splice: the head of this message and the tail of another valid one
      const other = rng.pick(valid);
      const head = b.slice(0, rng.int(b.length + 1));
      const tail = other.slice(rng.int(other.length + 1));
      return Uint8Array.from([...head, ...tail]);
    }
    case 3: {
      // insert random bytes
      const at = rng.int(b.length + 1);
      return Uint8Array.from([...b.slice(0, at), ...rng.bytes(1 + rng.int(16)), ...b.slice(at)]);
    }
    case 4: {
      // delete a range
      const at = rng.int(b.length);
      return Uint8Array.from([...b.slice(0, at), ...b.slice(at + 1 + rng.int(16))]);
    }
    case 5: {
      // overwrite with msgpack marker bytes
      const n = 1 + rng.int(3);
      for (let i = 0; i < n; i++) b[rng.int(b.length)] = rng.pick(INTERESTING);
      return b;
    }
    default: {
      // duplicate a range in place
      const at = rng.int(b.length);
      const len = 1 + rng.int(24);
      return Uint8Array.from([...b.slice(0, at + len), ...b.slice(at, at + len), ...b.slice(at + len)]);
    }
  }
}

const NAMES = [
  "a",
  "factory-a",
  "node.example.com",
  "Bad",
  "a b",
  "*",
  ">",
  "",
  "x".repeat(300),
  "gw-1",
  "proxy",
  "tunnel",
];

/** Values msgpackr packs as extensions and always unpacks to class instances: BigInt, Date, Set, RegExp, Error. */
const EXOTIC: (() => unknown)[] = [
  () => 2n ** 70n,
  () => -(2n ** 65n),
  () => new Date(0),
  () => new Set(["apps.openyurt.io/nodepool"]),
  () => /proxy/g,
  () => new Error("boom"),
];

function randomValue(rng: Rng, depth = 0): unknown {
  if (rng.next() < 0.05) return rng.pick(EXOTIC)();
  switch (rng.int(depth > 2 ? 6 : 8)) {
    case 0:
      return rng.pick([0, 1, -1, 2 ** 31, 2 ** 53, 1.5, -0.5, 60_000, 60_001, 255, Number.MAX_SAFE_INTEGER + 2]);
    case 1:
      return rng.pick(NAMES);
    case 2:
      return rng.next() < 0.5;
    case 3:
      return null;
    case 4:
      return undefined;
    case 5:
      return rng.bytes(rng.int(8));
    case 6:
      return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: rng.int(4) }, () => [rng.pick(NAMES), randomValue(rng, depth + 1)]),
      );
  }
}

/** A random frame: mostly a valid type and version, with a valid body that has up to two fields replaced. */
function randomEnvelope(rng: Rng, packr: Packr): Uint8Array {
  const type = rng.next() < 0.9 ? rng.pick(messageTypes) : rng.pick(["node", "gw.hb.x", "", "toString"]);
  const bodies = rng.next() < 0.5 ? fullBodies : minimalBodies;
  const base = Object.hasOwn(bodies, type) ? bodies[type as MessageType] : {};
  const body: Record<string, unknown> = structuredClone(base) as Record<string, unknown>;
  const keys = Object.keys(body);
  const fields = rng.int(3);
  for (let i = 0; i < fields; i++) {
    const key = keys.length && rng.next() < 0.8 ? rng.pick(keys) : rng.pick(NAMES);
    body[key] = randomValue(rng);
  }
  const v = rng.next() < 0.95 ? PROTOCOL_VERSION : randomValue(rng);
  return packr.pack(rng.next() < 0.97 ? frameValue(v, type, body) : randomValue(rng));
}

describe(`codec fuzz (seed ${SEED}; replay with RAVEN_FUZZ_SEED=${SEED})`, () => {
  console.info(`[fuzz] seed=${SEED}`);
  // Nearly every call throws, and capturing stack traces (source-mapped under vitest) costs more than the
  // decoding itself. The traces are never looked at here; the error classes and codes are.
  const stackTraceLimit = Error.stackTraceLimit;
  beforeAll(() => {
    Error.stackTraceLimit = 0;
  });
  afterAll(() => {
    Error.stackTraceLimit = stackTraceLimit;
  });

  it(`${RANDOM_BUFFERS} random buffers of 0..2048 bytes`, () => {
    const rng = prng(SEED);
    const h = new Harness("random-bytes");
    for (let i = 0; i < RANDOM_BUFFERS; i++) {
      h.feed(rng.bytes(rng.int(2049)), i);
      // The codec keeps module state (msgpackr); a valid message must still decode after any junk.
      if (i % 1_000 === 0) {
        const accepted = h.accepted;
        h.feed(rng.pick(valid), i);
        expect(h.accepted, `seed=${SEED}: a valid message was refused after junk`).toBe(accepted + 1);
      }
    }
    h.verifyCounters();
    expect(h.rejectedCalls).toBeGreaterThan(RANDOM_BUFFERS * 3 - 100);
  });

  for (const type of messageTypes) {
    it(`${MUTATIONS_PER_TYPE} mutations of valid ${type} messages`, () => {
      const rng = prng(SEED ^ type.length ^ (messageTypes.indexOf(type) << 8));
      const h = new Harness(`mutations(${type})`);
      const sources = validOf(type);
      for (let i = 0; i < MUTATIONS_PER_TYPE; i++) h.feed(mutate(rng, rng.pick(sources)), i);
      const accepted = h.accepted;
      sources.forEach((src, i) => h.feed(src, i)); // the unmutated originals are still accepted
      h.verifyCounters();
      expect(h.accepted).toBe(accepted + sources.length);
      expect(h.rejectedCalls).toBeGreaterThan(0);
    });
  }

  it(`${RANDOM_ENVELOPES} structured envelopes with corrupted fields`, () => {
    const rng = prng(SEED + 1);
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: true, useBigIntExtension: true });
    const h = new Harness("envelopes");
    for (let i = 0; i < RANDOM_ENVELOPES; i++) h.feed(randomEnvelope(rng, packr), i);
    h.verifyCounters();
    // The generator must reach both sides of the schemas, or it tests nothing.
    expect(h.accepted).toBeGreaterThan(RANDOM_ENVELOPES / 20);
    expect(h.expected.get(reasonKey("INVALID_MESSAGE")) ?? 0).toBeGreaterThan(RANDOM_ENVELOPES);
  });
});
