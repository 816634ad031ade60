// The server side of RFC 6455, just enough for an echo endpoint: the opening-handshake key check and
// accept value, a frame reader for masked client frames, a frame encoder for unmasked server frames, and
// `serveWebSocketEcho`, which echoes data frames (opcode and FIN kept, so fragmented messages come back
// fragmented), answers ping with pong and close with close. No extensions are negotiated (RSV bits must be 0).
// Protocol violations close with 1002, oversized frames with 1009; nothing here throws into the caller.
// Backpressure: while the socket's write buffer is full, reading pauses.
import { createHash } from "node:crypto";
import type { Duplex } from "node:stream";

export const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export const Opcode = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9, Pong: 0xa } as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

export type WsFrame = Readonly<{ fin: boolean; opcode: number; payload: Buffer }>;
export type WsReadResult = { type: "frame"; frame: WsFrame } | { type: "error"; code: 1002 | 1009; reason: string };

/** A Sec-WebSocket-Key must be base64 of exactly 16 bytes. */
export function isWebSocketKey(key: unknown): key is string {
  return typeof key === "string" && /^[A-Za-z0-9+/]{22}==$/.test(key);
}

export function webSocketAccept(key: string): string {
  return createHash("sha1")
    .update(key + WS_GUID)
    .digest("base64");
}

export function encodeFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len <= 0xffff ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = (fin ? 0x80 : 0) | (opcode & 0x0f);
  if (len < 126) head[1] = len;
  else if (len <= 0xffff) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

/** Incremental reader of client frames: push bytes as they arrive, get every complete frame back. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(private readonly maxFrameBytes = MAX_FRAME_BYTES) {}

  push(chunk: Buffer): WsReadResult[] {
    if (this.failed) return [];
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: WsReadResult[] = [];
    for (;;) {
      const r = this.next();
      if (r === undefined) return out;
      out.push(r);
      if (r.type === "error") {
        this.failed = true;
        return out;
      }
    }
  }

  private next(): WsReadResult | undefined {
    if (this.buffered < 2) return undefined;
    const b = this.peek(2);
    const fin = (b[0]! & 0x80) !== 0;
    const opcode = b[0]! & 0x0f;
    const masked = (b[1]! & 0x80) !== 0;
    const len7 = b[1]! & 0x7f;
    if ((b[0]! & 0x70) !== 0) return { type: "error", code: 1002, reason: "RSV bits set without an extension" };
    if (![0, 1, 2, 8, 9, 10].includes(opcode)) return { type: "error", code: 1002, reason: `unknown opcode ${opcode}` };
    if (!masked) return { type: "error", code: 1002, reason: "client frames must be masked" };
    if (opcode >= 8 && (!fin || len7 > 125))
      return { type: "error", code: 1002, reason: "control frames must be final and at most 125 bytes" };
    const extLen = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const headLen = 2 + extLen + 4;
    if (this.buffered < headLen) return undefined;
    const head = this.peek(headLen);
    let len: number;
    if (len7 === 126) len = head.readUInt16BE(2);
    else if (len7 === 127) {
      const big = head.readBigUInt64BE(2);
      if (big > BigInt(this.maxFrameBytes))
        return { type: "error", code: 1009, reason: `frame of ${big} bytes exceeds ${this.maxFrameBytes}` };
      len = Number(big);
    } else len = len7;
    if (len > this.maxFrameBytes)
      return { type: "error", code: 1009, reason: `frame of ${len} bytes exceeds ${this.maxFrameBytes}` };
    if (this.buffered < headLen + len) return undefined;
    const mask = this.take(headLen).subarray(2 + extLen);
    const payload = Buffer.from(this.take(len));
    for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    return { type: "frame", frame: { fin, opcode, payload } };
  }

  /** The first n buffered bytes (n <= buffered), without consuming them. */
  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

function closePayload(code: number, reason = ""): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

/** Runs the echo protocol on an upgraded socket until either side closes. `head` is data read past the handshake. */
export function serveWebSocketEcho(socket: Duplex, head: Buffer, onMessage?: () => void): void {
  const reader = new FrameReader();
  let closing = false;
  const send = (frame: Buffer) => {
    if (!socket.writable) return;
    if (!socket.write(frame)) {
      socket.pause();
      socket.once("drain", () => socket.resume());
    }
  };
  const handle = (chunk: Buffer) => {
    if (closing) return;
    for (const r of reader.push(chunk)) {
      if (r.type === "error") {
        closing = true;
        send(encodeFrame(Opcode.Close, closePayload(r.code, r.reason.slice(0, 100))));
        socket.end();
        return;
      }
      const { fin, opcode, payload } = r.frame;
      if (opcode === Opcode.Close) {
        closing = true;
        // Echo the status code (not the reason: an echo must not be mistaken for our own reason).
        send(encodeFrame(Opcode.Close, payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0)));
        socket.end();
        return;
      }
      if (opcode === Opcode.Ping) send(encodeFrame(Opcode.Pong, payload));
      else if (opcode === Opcode.Pong) continue;
      else {
        onMessage?.();
        send(encodeFrame(opcode, payload, fin));
      }
    }
  };
  socket.on("data", handle);
  if (head.length > 0) handle(head);
}
