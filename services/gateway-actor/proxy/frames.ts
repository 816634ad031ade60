// Handshake frames at the start of a channel connection: a 4-byte big-endian length, then one protocol
// message (shared/protocol, `chan.*` or `error`). Only the handshake is framed this way; after `chan.opened` the
// connection carries the channel's bytes raw, or as the native relay's sealed frames (native-relay.ts).
// `readFrame` returns whatever arrived after the frame (`rest`), which the caller must pass on before anything
// else (unshift it, or hand it to the relay): a target that speaks first may already have sent bytes. On a
// sealed channel nothing may follow (the edge speaks only after the cloud's first frame).
import type { Duplex } from "node:stream";
import { ChannelError } from "../../../shared/errors";
import { decode, encode, type Message, type MessageBody, type MessageType } from "../../../shared/protocol";

const MAX_FRAME_BYTES = 16 * 1024;

export function frame<T extends MessageType>(type: T, body: MessageBody<T>): Buffer {
  const payload = encode(type, body);
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, 4);
  return out;
}

export type ReadFrame = { msg: Message; rest: Buffer };

/**
 * Reads exactly one frame. Rejects with a ChannelError when the peer closes first, sends an oversized or
 * undecodable frame, or takes longer than timeoutMs (0: wait forever, for idle spares); the socket is left for the caller to destroy.
 */
export function readFrame(socket: Duplex, timeoutMs: number, what: string): Promise<ReadFrame> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (err: Error | null, value?: ReadFrame) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
      if (err) reject(err);
      else {
        socket.pause();
        resolve(value!);
      }
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length < 4) return;
      const len = buf.readUInt32BE(0);
      if (len > MAX_FRAME_BYTES)
        return done(new ChannelError("PROTOCOL", `${what}: frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`));
      if (buf.length < 4 + len) return;
      try {
        const msg = decode(buf.subarray(4, 4 + len));
        done(null, { msg, rest: buf.subarray(4 + len) });
      } catch (err) {
        done(new ChannelError("PROTOCOL", `${what}: ${(err as Error).message}`, { cause: err }));
      }
    };
    const onEnd = () => done(new ChannelError("CLOSED", `${what}: the peer closed the connection`));
    const onError = (err: Error) => done(new ChannelError("CLOSED", `${what}: ${err.message}`, { cause: err }));
    const timer =
      timeoutMs > 0
        ? setTimeout(() => done(new ChannelError("TIMEOUT", `${what}: no answer within ${timeoutMs} ms`)), timeoutMs)
        : undefined;
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
    socket.resume();
  });
}
