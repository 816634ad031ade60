import { Packr, Unpackr } from "msgpackr";
import { describe, expect, it } from "vitest";
import {
  CasConflictError,
  ErrorCode,
  InvalidMessageError,
  MalformedMessageError,
  OversizedMessageError,
  RavenError,
  RemoteError,
  UnknownTypeError,
  UnknownVersionError,
  errorFromWire,
  errorToWire,
} from "../../../shared/errors";
import { counters } from "../../../shared/metrics";
import {
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  REJECTED_COUNTER,
  SUPPORTED_VERSIONS,
  decode,
  decodeAs,
  encode,
  messageSchemas,
  tryDecode,
  type MessageType,
} from "../../../shared/protocol";
import { frame, frameValue, fullBodies, messageTypes, minimalBodies, rawPackr } from "./fixtures";

const plain = new Unpackr({ mapsAsObjects: true });

const rejected = (reason: string) => counters.get("raven_messages_rejected_total", { reason });

type ErrorClass = new (...args: never[]) => RavenError;

/** Runs `fn`, expects it to throw `cls`, and expects exactly one rejection counted under `reason`. */
function expectRejection(fn: () => unknown, cls: ErrorClass, reason: string): RavenError {
  const before = rejected(reason);
  const totalBefore = counters.total(REJECTED_COUNTER);
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(cls);
  expect(rejected(reason)).toBe(before + 1);
  expect(counters.total(REJECTED_COUNTER)).toBe(totalBefore + 1);
  return caught as RavenError;
}

describe("frame", () => {
  it("carries the current protocol version, which is supported", () => {
    expect(REJECTED_COUNTER).toBe("raven_messages_rejected_total");
    expect(SUPPORTED_VERSIONS).toContain(PROTOCOL_VERSION);
    const env = plain.unpack(encode("node.hb", fullBodies["node.hb"]));
    expect(env).toEqual(frameValue(PROTOCOL_VERSION, "node.hb", fullBodies["node.hb"]));
  });

  it("is plain msgpack: deterministic bytes any fresh decoder reads, with no shared codec state", () => {
    const a = encode("gw.hb", fullBodies["gw.hb"]);
    for (let i = 0; i < 50; i++) encode("status.reply", fullBodies["status.reply"]);
    const b = encode("gw.hb", fullBodies["gw.hb"]);
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
    // A decoder that never saw our encoder's structures reads it: no msgpackr records are in use.
    expect(new Unpackr({ mapsAsObjects: true }).unpack(a)).toEqual(
      frameValue(PROTOCOL_VERSION, "gw.hb", fullBodies["gw.hb"]),
    );
  });

  it("earlier encoded buffers stay intact after many later encodes", () => {
    const first = encode("error", { code: "X", message: "first" });
    const copy = Uint8Array.from(first);
    for (let i = 0; i < 2_000; i++) encode("error", { code: "Y", message: "z".repeat(i % 300) });
    expect(Buffer.from(first).equals(Buffer.from(copy))).toBe(true);
    expect(decode(first)).toEqual({ type: "error", body: { code: "X", message: "first" } });
  });
});

describe("round trip", () => {
  it("has a fixture for every message type", () => {
    expect(Object.keys(fullBodies).sort()).toEqual(Object.keys(messageSchemas).sort());
    expect(messageTypes.length).toBeGreaterThanOrEqual(8);
  });

  for (const type of messageTypes) {
    it(`${type}: full and minimal bodies decode to what was encoded`, () => {
      for (const body of [fullBodies[type], minimalBodies[type]]) {
        const bytes = encode(type, body);
        expect(decode(bytes)).toEqual({ type, body });
        expect(decodeAs(bytes, type)).toEqual(body);
        expect(tryDecode(bytes)).toEqual({ type, body });
      }
    });
  }

  it("keeps dotted node names and a solo registration's null gateway", () => {
    const body = { node: "ip-10-0-0-1.ec2.internal", domain: "edge", gateway: null, solo: true };
    expect(decodeAs(encode("node.registered", body), "node.registered")).toEqual(body);
  });

  it("drops unknown extra fields, at the top and nested, so newer peers can add optional ones", () => {
    const body = {
      ...fullBodies.assignment,
      future: { nested: true },
      active: [{ nodeName: "factory-a-gw-1", type: "proxy", weight: 3 }],
    };
    const value = frameValue(PROTOCOL_VERSION, "assignment", body);
    // a newer peer's addition to the frame itself: a trailing field, or an envelope key
    if (Array.isArray(value)) value.push("appended field");
    else (value as Record<string, unknown>).extra = "envelope field";
    const decoded = decodeAs(rawPackr.pack(value), "assignment");
    expect(decoded).toEqual({ ...fullBodies.assignment, active: [{ nodeName: "factory-a-gw-1", type: "proxy" }] });
    expect(Object.keys(decoded)).not.toContain("future");
    expect(Object.keys(decoded.active[0]!)).toEqual(["nodeName", "type"]);
  });

  it("normalizes absent optional fields: null optional is dropped, missing nullable becomes null", () => {
    const reg = decodeAs(frame("node.register", { ...minimalBodies["node.register"], podCIDR: null }), "node.register");
    expect("podCIDR" in reg).toBe(false);
    const { gateway: _omitted, ...noGateway } = fullBodies["node.registered"];
    expect(decodeAs(frame("node.registered", noGateway), "node.registered").gateway).toBeNull();
  });

  it("reads an older coordinator's status reply, which has no termChangesLastMinute, as absent", () => {
    const reply = structuredClone(fullBodies["status.reply"]);
    delete reply.domains[0]!.termChangesLastMinute;
    const decoded = decodeAs(frame("status.reply", reply), "status.reply");
    expect(decoded).toEqual(reply);
    expect("termChangesLastMinute" in decoded.domains[0]!).toBe(false);
  });

  it("carries a typed error across the wire and rebuilds it", () => {
    const wire = decodeAs(encode("error", errorToWire(new CasConflictError("gw.gw-factory-a"))), "error");
    const err = errorFromWire(wire);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.code).toBe(ErrorCode.CasConflict);
    expect(err.message).toContain("gw.gw-factory-a");
    expect(errorFromWire({ code: "NO_SUCH_CODE", message: "m" }).code).toBe(ErrorCode.Internal);
    expect(errorToWire(new TypeError("boom"))).toEqual({ code: ErrorCode.Internal, message: "boom" });
  });
});

describe("decode rejects", () => {
  it("empty bytes as MALFORMED", () => {
    const err = expectRejection(() => decode(new Uint8Array(0)), MalformedMessageError, ErrorCode.Malformed);
    expect(err.message).toBe("empty message");
  });

  it("bytes that are not msgpack as MALFORMED", () => {
    const notMsgpack = [
      [0xde, 0x00, 0x05], // map16 of 5 entries, then nothing
      [0xa5, 0x61], // str of 5, 1 byte present
      Array.from(Buffer.from('{"v":1}')), // JSON is one fixint and trailing bytes
      [...encode("node.hb", fullBodies["node.hb"]), 0x00], // a valid message plus a trailing byte
      [0xc7, 0x01, 0x55, 0x00], // unknown extension type
    ];
    for (const bytes of notMsgpack) {
      const err = expectRejection(() => decode(Uint8Array.from(bytes)), MalformedMessageError, ErrorCode.Malformed);
      expect(err.code).toBe(ErrorCode.Malformed);
    }
  });

  // msgpackr decodes 0xc1 ("never used" in the msgpack spec) to a C1Type marker object, which is no frame.
  it("the never-used byte 0xc1 as MALFORMED", () => {
    expectRejection(() => decode(Uint8Array.from([0xc1])), MalformedMessageError, ErrorCode.Malformed);
  });

  it("a msgpack value that is not a frame as MALFORMED", () => {
    for (const value of [{ v: PROTOCOL_VERSION, type: "node.hb" }, "node.hb", 1, null, true]) {
      const err = expectRejection(() => decode(rawPackr.pack(value)), MalformedMessageError, ErrorCode.Malformed);
      expect(err.message).toMatch(/^frame is not a/);
    }
  });

  it("a wrong or missing version as UNKNOWN_VERSION", () => {
    for (const v of [0, 2, PROTOCOL_VERSION + 1, "1", null, 1.5, -1, [1]]) {
      const err = expectRejection(
        () => decode(frame("node.hb", fullBodies["node.hb"], v)),
        UnknownVersionError,
        ErrorCode.UnknownVersion,
      );
      expect((err as UnknownVersionError).version).toEqual(v);
    }
  });

  it("an unknown type as UNKNOWN_TYPE, including inherited property names", () => {
    for (const type of ["node.unknown", "NODE.HB", "", 7, null, "toString", "constructor", "__proto__"]) {
      const err = expectRejection(() => decode(frame(type, {})), UnknownTypeError, ErrorCode.UnknownType);
      expect(err.message).toContain("unknown message type");
    }
  });

  const badFields: [MessageType, Record<string, unknown>, string][] = [
    ["node.register", { internalIP: undefined }, "node.register.internalIP"],
    ["node.register", { node: "Bad_Name" }, "node.register.node"],
    ["node.register", { labels: { "apps.openyurt.io/nodepool": 3 } }, "node.register.labels.apps.openyurt.io/nodepool"],
    ["node.register", { podCIDR: 10 }, "node.register.podCIDR"],
    ["node.registered", { solo: undefined }, "node.registered.solo"],
    ["node.registered", { gateway: "gw*" }, "node.registered.gateway"],
    ["node.hb", { seq: -1 }, "node.hb.seq"],
    ["node.hb", { seq: 1.5 }, "node.hb.seq"],
    ["node.hb", { ready: "yes" }, "node.hb.ready"],
    ["node.hb", { domain: "factory.a" }, "node.hb.domain"],
    ["gw.hb", { active: ["proxy", "vpn"] }, "gw.hb.active[1]"],
    ["gw.hb", { active: ["proxy", "tunnel", "proxy"] }, "gw.hb.active"],
    ["gw.hb", { leaseLeftMs: 60_001 }, "gw.hb.leaseLeftMs"],
    ["gw.hb", { detail: "d".repeat(257) }, "gw.hb.detail"],
    ["assignment", { active: [{ nodeName: "a", type: "vpn" }] }, "assignment.active[0].type"],
    ["assignment", { acks: [{ nodeName: "a" }] }, "assignment.acks[0].seq"],
    ["assignment", { leaseMs: 0 }, "assignment.leaseMs"],
    ["error", { message: "m".repeat(4097) }, "error.message"],
    ["error", { code: undefined }, "error.code"],
    ["status.request", { domain: "Factory" }, "status.request.domain"],
  ];
  for (const [type, patch, path] of badFields) {
    it(`${type} with bad ${path} as INVALID_MESSAGE naming the field`, () => {
      const body = { ...fullBodies[type], ...patch };
      const err = expectRejection(() => decode(frame(type, body)), InvalidMessageError, ErrorCode.InvalidMessage);
      expect(err.message.startsWith(`${path}: expected `), err.message).toBe(true);
    });
  }

  it("a deeply nested bad field with its full path", () => {
    const reply = structuredClone(fullBodies["status.reply"]);
    delete (reply.domains[0]!.candidates[1] as Partial<(typeof reply.domains)[0]["candidates"][0]>).healthy;
    const err = expectRejection(
      () => decode(frame("status.reply", reply)),
      InvalidMessageError,
      ErrorCode.InvalidMessage,
    );
    expect(err.message).toBe("status.reply.domains[0].candidates[1].healthy: expected a boolean, got nothing");
  });

  it("a status reply's termChangesLastMinute that is not a count, naming the field", () => {
    for (const bad of [-1, 1.5, "3"]) {
      const reply = structuredClone(fullBodies["status.reply"]);
      (reply.domains[0] as Record<string, unknown>).termChangesLastMinute = bad;
      const err = expectRejection(
        () => decode(frame("status.reply", reply)),
        InvalidMessageError,
        ErrorCode.InvalidMessage,
      );
      expect(
        err.message.startsWith("status.reply.domains[0].termChangesLastMinute: expected an integer"),
        err.message,
      ).toBe(true);
    }
  });

  it("a frame without its fields as INVALID_MESSAGE naming the first field", () => {
    const err = expectRejection(
      () => decode(rawPackr.pack([PROTOCOL_VERSION, "node.hb"])),
      InvalidMessageError,
      ErrorCode.InvalidMessage,
    );
    expect(err.message).toMatch(/^node\.hb\.node: expected /);
  });

  // msgpackr always decodes ext 0x42 to a BigInt, which JSON.stringify cannot show: the error must still
  // name the field rather than turn into MALFORMED.
  it("a BigInt where a number belongs as INVALID_MESSAGE naming the field", () => {
    const big = new Packr({ useRecords: false, mapsAsObjects: true, useBigIntExtension: true });
    const bytes = big.pack(frameValue(PROTOCOL_VERSION, "node.hb", { ...fullBodies["node.hb"], seq: 2n ** 70n }));
    const err = expectRejection(() => decode(bytes), InvalidMessageError, ErrorCode.InvalidMessage);
    expect(err.message).toMatch(/^node\.hb\.seq: /);
  });

  // schema.ts `record`/`obj` accept any non-array object. msgpackr always decodes some extensions to class
  // instances (Set 0x73, Date, RegExp, Error...); a Set of labels becomes `labels: {}` without complaint.
  it("a msgpack Set where the labels map belongs as INVALID_MESSAGE", () => {
    const more = new Packr({ useRecords: false, moreTypes: true });
    const body = { ...fullBodies["node.register"], labels: new Set(["apps.openyurt.io/nodepool"]) };
    const bytes = more.pack(frameValue(PROTOCOL_VERSION, "node.register", body));
    const err = expectRejection(() => decode(bytes), InvalidMessageError, ErrorCode.InvalidMessage);
    expect(err.message).toMatch(/^node\.register\.labels: /);
  });

  it("input over MAX_MESSAGE_BYTES as OVERSIZED before looking at it", () => {
    const huge = new Uint8Array(MAX_MESSAGE_BYTES + 1);
    huge.set(encode("node.hb", fullBodies["node.hb"]));
    const err = expectRejection(
      () => decode(huge),
      OversizedMessageError,
      ErrorCode.Oversized,
    ) as OversizedMessageError;
    expect(err.size).toBe(MAX_MESSAGE_BYTES + 1);
    expect(err.limit).toBe(MAX_MESSAGE_BYTES);
    // Exactly at the limit is decoded (and here fails as garbage, not as oversized).
    expectRejection(
      () => decode(new Uint8Array(MAX_MESSAGE_BYTES).fill(0xc1)),
      MalformedMessageError,
      ErrorCode.Malformed,
    );
  });
});

describe("encode", () => {
  const overhead = encode("error", { code: "X", message: "m".repeat(70_000) }).length - 70_000;

  it("accepts a body of exactly MAX_MESSAGE_BYTES and refuses one byte more", () => {
    const atLimit = encode("error", { code: "X", message: "m".repeat(MAX_MESSAGE_BYTES - overhead) });
    expect(atLimit.length).toBe(MAX_MESSAGE_BYTES);
    // decode takes it in, then the schema refuses the over-long message field
    const err = expectRejection(() => decode(atLimit), InvalidMessageError, ErrorCode.InvalidMessage);
    expect(err.message).toMatch(/^error\.message: /);
    expect(() => encode("error", { code: "X", message: "m".repeat(MAX_MESSAGE_BYTES - overhead + 1) })).toThrow(
      OversizedMessageError,
    );
  });

  it("refuses an oversized status reply without counting a rejection", () => {
    const node = { node: "n", internalIP: "10.0.0.1", ready: true, lastHeartbeatAgeMs: 1 };
    const domain = { ...fullBodies["status.reply"].domains[0]!, nodes: Array.from({ length: 8_000 }, () => node) };
    const total = counters.total(REJECTED_COUNTER);
    expect(() => encode("status.reply", { ...fullBodies["status.reply"], domains: [domain] })).toThrow(
      OversizedMessageError,
    );
    expect(counters.total(REJECTED_COUNTER)).toBe(total);
  });
});

describe("decodeAs and tryDecode", () => {
  it("decodeAs with the wrong type throws InvalidMessageError naming both types and counts WRONG_TYPE", () => {
    const bytes = encode("node.hb", fullBodies["node.hb"]);
    for (const other of messageTypes.filter((t) => t !== "node.hb")) {
      const err = expectRejection(() => decodeAs(bytes, other), InvalidMessageError, "WRONG_TYPE");
      expect(err.message).toBe(`expected a ${other} message, got node.hb`);
    }
  });

  it("decodeAs passes decode's own rejection through, counted once", () => {
    expectRejection(
      () => decodeAs(new Uint8Array([0xa5, 0x61]), "node.hb"),
      MalformedMessageError,
      ErrorCode.Malformed,
    );
    expectRejection(() => decodeAs(frame("node.hb", {}), "node.hb"), InvalidMessageError, ErrorCode.InvalidMessage);
  });

  it("tryDecode returns undefined, hands the typed error to onReject, and counts it", () => {
    const seen: RavenError[] = [];
    const before = rejected(ErrorCode.UnknownVersion);
    expect(tryDecode(frame("node.hb", fullBodies["node.hb"], 9), (e) => seen.push(e))).toBeUndefined();
    expect(tryDecode(new Uint8Array(0))).toBeUndefined();
    expect(rejected(ErrorCode.UnknownVersion)).toBe(before + 1);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(UnknownVersionError);
  });

  it("tryDecode does not call onReject for a good message", () => {
    let calls = 0;
    const msg = tryDecode(encode("status.request", {}), () => calls++);
    expect(msg).toEqual({ type: "status.request", body: {} });
    expect(calls).toBe(0);
  });
});
