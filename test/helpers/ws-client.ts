// A minimal RFC 6455 client for tests (Node 20 has no WebSocket client without a flag, and we add no
// dependencies): performs the opening handshake over a plain or TLS socket, checks Sec-WebSocket-Accept,
// sends masked frames and reads the server's unmasked frames one at a time.
import { createHash, randomBytes } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";

export type ClientFrame = { fin: boolean; opcode: number; payload: Buffer };

export type WsClient = {
  socket: Socket;
  /** The raw response head (status line and headers). */
  response: string;
  send(opcode: number, payload: Buffer | string, fin?: boolean): void;
  /** Next frame from the server; rejects when the connection ends first. */
  next(timeoutMs?: number): Promise<ClientFrame>;
  /** Resolves when the server has closed the TCP connection. */
  ended: Promise<void>;
};

export function maskedFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len <= 0xffff ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) head[1] = 0x80 | len;
  else if (len <= 0xffff) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, mask, body]);
}

export function connectWebSocket(
  port: number,
  opts: { host?: string; path?: string; tls?: ConnectionOptions } = {},
): Promise<WsClient> {
  const host = opts.host ?? "127.0.0.1";
  const key = randomBytes(16).toString("base64");
  const socket: Socket = opts.tls ? tlsConnect({ host, port, ...opts.tls }) : netConnect(port, host);
  let buf = Buffer.alloc(0);
  const frames: ClientFrame[] = [];
  const waiters: { resolve: (f: ClientFrame) => void; reject: (e: Error) => void }[] = [];
  let ended = false;
  const endedP = new Promise<void>((resolve) => socket.once("close", () => resolve()));

  const parse = () => {
    for (;;) {
      if (buf.length < 2) return;
      const len7 = buf[1]! & 0x7f;
      const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      if (buf.length < 2 + ext) return;
      const len = len7 === 126 ? buf.readUInt16BE(2) : len7 === 127 ? Number(buf.readBigUInt64BE(2)) : len7;
      if (buf.length < 2 + ext + len) return;
      const frame = {
        fin: (buf[0]! & 0x80) !== 0,
        opcode: buf[0]! & 0x0f,
        payload: Buffer.from(buf.subarray(2 + ext, 2 + ext + len)),
      };
      buf = buf.subarray(2 + ext + len);
      const w = waiters.shift();
      if (w) w.resolve(frame);
      else frames.push(frame);
    }
  };

  return new Promise((resolve, reject) => {
    let response: string | null = null;
    socket.once("error", reject);
    socket.once("close", () => {
      ended = true;
      for (const w of waiters.splice(0)) w.reject(new Error("connection ended"));
      if (response === null) reject(new Error(`closed during handshake: ${buf.toString()}`));
    });
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (response === null) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        response = buf.subarray(0, end).toString();
        buf = buf.subarray(end + 4);
        const accept = createHash("sha1")
          .update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
          .digest("base64");
        if (!response.startsWith("HTTP/1.1 101") || !response.includes(`Sec-WebSocket-Accept: ${accept}`)) {
          socket.destroy();
          return reject(new Error(`handshake refused: ${response}`));
        }
        resolve({
          socket,
          response,
          send: (opcode, payload, fin = true) => socket.write(maskedFrame(opcode, Buffer.from(payload), fin)),
          next: (timeoutMs = 3_000) => {
            const f = frames.shift();
            if (f) return Promise.resolve(f);
            if (ended) return Promise.reject(new Error("connection ended"));
            return new Promise((res, rej) => {
              const t = setTimeout(() => rej(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
              waiters.push({ resolve: (x) => (clearTimeout(t), res(x)), reject: (e) => (clearTimeout(t), rej(e)) });
            });
          },
          ended: endedP,
        });
      }
      parse();
    });
    const path = opts.path ?? "/";
    socket.write(
      [
        `GET ${path} HTTP/1.1`,
        `Host: ${host}:${port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
        "",
        "",
      ].join("\r\n"),
    );
  });
}
