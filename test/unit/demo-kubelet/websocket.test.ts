// The RFC 6455 pieces of the target server as functions: accept value, frame reader, frame encoder.
import { describe, expect, it } from "vitest";
import {
  encodeFrame,
  FrameReader,
  isWebSocketKey,
  Opcode,
  webSocketAccept,
  type WsReadResult,
} from "../../../lib/demo-kubelet/websocket";
import { maskedFrame } from "../../helpers/ws-client";

describe("websocket handshake", () => {
  it("computes the RFC 6455 example accept value and checks keys", () => {
    expect(webSocketAccept("dGhlIHNhbXBsZSBub25jZQ==")).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    expect(isWebSocketKey("dGhlIHNhbXBsZSBub25jZQ==")).toBe(true);
    for (const bad of ["", "abc", "dGhlIHNhbXBsZSBub25jZQ", 42, undefined]) expect(isWebSocketKey(bad)).toBe(false);
  });
});

describe("FrameReader", () => {
  it("reads masked frames of every length form, delivered one byte at a time", () => {
    const payloads = [Buffer.from("hi"), Buffer.alloc(300, 7), Buffer.alloc(70_000, 9)];
    const wire = Buffer.concat(payloads.map((p, i) => maskedFrame(i === 0 ? Opcode.Text : Opcode.Binary, p)));
    const reader = new FrameReader();
    const got: WsReadResult[] = [];
    for (let i = 0; i < wire.length; i++) got.push(...reader.push(wire.subarray(i, i + 1)));
    expect(
      got.map((r, i) => (r.type === "frame" ? [r.frame.opcode, r.frame.fin, r.frame.payload.equals(payloads[i]!)] : r)),
    ).toEqual([
      [Opcode.Text, true, true],
      [Opcode.Binary, true, true],
      [Opcode.Binary, true, true],
    ]);
  });

  it("keeps FIN for fragments and reads several frames from one chunk", () => {
    const wire = Buffer.concat([
      maskedFrame(Opcode.Text, Buffer.from("ab"), false),
      maskedFrame(Opcode.Continuation, Buffer.from("cd")),
    ]);
    const got = new FrameReader().push(wire);
    expect(got).toEqual([
      { type: "frame", frame: { fin: false, opcode: Opcode.Text, payload: Buffer.from("ab") } },
      { type: "frame", frame: { fin: true, opcode: Opcode.Continuation, payload: Buffer.from("cd") } },
    ]);
  });

  it("reports protocol errors: unmasked, RSV bits, unknown opcode, long control frame, oversized", () => {
    const first = (wire: Buffer, max?: number) => new FrameReader(max).push(wire)[0];
    expect(first(encodeFrame(Opcode.Text, Buffer.from("x")))).toMatchObject({
      type: "error",
      code: 1002,
      reason: /masked/,
    });
    const rsv = maskedFrame(Opcode.Text, Buffer.from("x"));
    rsv[0]! |= 0x40;
    expect(first(rsv)).toMatchObject({ type: "error", code: 1002 });
    expect(first(maskedFrame(0x3, Buffer.from("x")))).toMatchObject({ type: "error", code: 1002, reason: /opcode 3/ });
    expect(first(maskedFrame(Opcode.Ping, Buffer.alloc(126)))).toMatchObject({ type: "error", code: 1002 });
    expect(first(maskedFrame(Opcode.Binary, Buffer.alloc(2000)), 1000)).toMatchObject({ type: "error", code: 1009 });
  });

  it("encodes unmasked server frames with the shortest length form", () => {
    expect([...encodeFrame(Opcode.Text, Buffer.from("hi"))]).toEqual([0x81, 2, 0x68, 0x69]);
    expect(encodeFrame(Opcode.Binary, Buffer.alloc(300), false).subarray(0, 4)).toEqual(
      Buffer.from([0x02, 126, 0x01, 0x2c]),
    );
    expect(encodeFrame(Opcode.Binary, Buffer.alloc(70_000)).length).toBe(70_010);
  });
});
