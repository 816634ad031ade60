// Clients for proxy tests, speaking the real protocols: curl (a real HTTP client, through CONNECT and as a
// proxy URL), HTTP CONNECT by hand, a minimal RFC 6455 WebSocket client, and a chunked-stream reader.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { connectVia as libConnectVia } from "../../bench/proxy-lib";
import { maskedFrame } from "./ws-client";

export type CurlResult = { code: number; status: number; body: string; stderr: string };

/** Runs curl; `status` is the HTTP status (`-w %{http_code}`), `code` curl's exit code. */
export function curl(args: string[], timeoutMs = 10_000): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(
      "curl",
      ["-sS", "--max-time", String(timeoutMs / 1000), "-w", "\n%{http_code}", ...args],
      { timeout: timeoutMs + 2_000 },
      (err, stdout, stderr) => {
        const lines = stdout.split("\n");
        const status = Number(lines.pop());
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, status, body: lines.join("\n"), stderr });
      },
    );
  });
}

/** HTTP CONNECT through a proxy (bench/proxy-lib's client); rejects with the status line and the reason. */
export function connectVia(
  proxy: { host: string; port: number },
  target: string,
  timeoutMs = 5_000,
): Promise<net.Socket> {
  return libConnectVia(proxy.host, proxy.port, target, timeoutMs);
}

/** One HTTP/1.1 request on an already connected socket (a tunnel); resolves with status and body. */
export function requestOver(socket: net.Socket, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { createConnection: () => socket, host, path, headers: { connection: "close" } },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
    socket.resume(); // connectVia left it paused; the client's reader is attached first (next tick)
  });
}

/** A WebSocket session over an already tunnelled `socket` (ws-client.ts dials its own): handshake, then
 * short text frames out and back. */
export async function websocket(
  socket: net.Socket,
  host: string,
  path = "/exec",
): Promise<{ send(text: string): void; next(): Promise<string>; close(): void }> {
  const key = randomBytes(16).toString("base64");
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  const waiters: ((b: Buffer) => void)[] = [];
  socket.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    waiters.shift()?.(buf);
  });
  socket.resume();
  const more = () => new Promise<Buffer>((r) => waiters.push(r));
  while (buf.indexOf("\r\n\r\n") < 0) await more();
  const end = buf.indexOf("\r\n\r\n");
  const head = buf.subarray(0, end).toString();
  if (!/^HTTP\/1\.1 101/.test(head)) throw new Error(`WebSocket upgrade refused: ${head.split("\r\n")[0]}`);
  buf = buf.subarray(end + 4);
  return {
    send(text: string) {
      if (Buffer.byteLength(text) > 125) throw new Error("this reader takes short frames only");
      socket.write(maskedFrame(0x1, Buffer.from(text)));
    },
    async next() {
      while (buf.length < 2 || buf.length < 2 + (buf[1]! & 0x7f)) await more();
      const len = buf[1]! & 0x7f;
      const text = buf.subarray(2, 2 + len).toString();
      buf = buf.subarray(2 + len);
      return text;
    },
    close() {
      socket.destroy();
    },
  };
}

/** GETs a URL through a forward proxy and reports when each chunk arrived, relative to the request. */
export function streamVia(
  proxy: { host: string; port: number },
  url: string,
): Promise<{ status: number; chunks: { atMs: number; text: string }[] }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.get(
      { host: proxy.host, port: proxy.port, path: url, headers: { host: new URL(url).host } },
      (res) => {
        const chunks: { atMs: number; text: string }[] = [];
        res.setEncoding("utf8");
        res.on("data", (c: string) => chunks.push({ atMs: performance.now() - t0, text: c }));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, chunks }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
  });
}
