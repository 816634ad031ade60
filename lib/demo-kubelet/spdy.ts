// The kubelet stand-in's `exec` over SPDY/3.1, the protocol kubectl falls back to when a WebSocket upgrade is
// refused (or when told to: KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false), with the v4/v5.channel.k8s.io stream
// protocol: the client opens one SPDY stream per channel (header `streamtype`: error, stdin, stdout, stderr,
// resize); once those the query asks for are open the command runs (exec.ts's), its output goes out as DATA
// on stdout/stderr, the final metav1.Status on the error stream, and every stream is closed with FIN.
//
// SPDY/3 frames (8-byte header; a control frame: 0x8003, type, flags, 24-bit length; a data frame: stream id,
// flags, length). Header blocks are zlib streams preset with the SPDY/3 dictionary, one stream per direction
// for the whole connection: the client's (real compression) are inflated from everything received so far;
// ours are written as stored (uncompressed) deflate blocks after a zlib header naming the dictionary, each
// ended as a sync flush ends, which any zlib reader accepts and which needs no compressor state.
import { createHash } from "node:crypto";
import type { Duplex } from "node:stream";
import { constants as zlibConstants, inflateSync } from "node:zlib";
import { runCommand, statusJson, type CommandResult } from "./exec";

/** SPDY/3's header dictionary: length-prefixed words, then a literal tail (1423 bytes, sha256 in the test). */
const DICTIONARY_WORDS = [
  "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
  "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
  "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
  "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
  "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
  "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
  "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
  "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
  "keep-alive", "origin",
]; // prettier-ignore
const DICTIONARY_TAIL =
  "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505" +
  "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized" +
  "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable" +
  "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT" +
  "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain," +
  "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

export const SPDY_DICTIONARY: Buffer = Buffer.concat([
  ...DICTIONARY_WORDS.map((w) => {
    const b = Buffer.alloc(4 + w.length);
    b.writeUInt32BE(w.length, 0);
    b.write(w, 4, "latin1");
    return b;
  }),
  Buffer.from(DICTIONARY_TAIL, "latin1"),
]);

/** The stream protocols this stand-in speaks over SPDY, in its order of preference. */
export const SPDY_EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"] as const;

const Type = { SynStream: 1, SynReply: 2, RstStream: 3, Settings: 4, Ping: 6, GoAway: 7, Headers: 8 } as const;
const FLAG_FIN = 0x01;
const SYNC_FLUSH_MARK = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);
const MAX_FRAME = 1 << 20;

function adler32(b: Buffer): number {
  let a = 1;
  let s = 0;
  for (const x of b) {
    a = (a + x) % 65521;
    s = (s + a) % 65521;
  }
  return ((s << 16) | a) >>> 0;
}

export function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

function encodeHeaders(pairs: readonly [string, string][]): Buffer {
  const parts = [Buffer.alloc(4)];
  parts[0]!.writeUInt32BE(pairs.length, 0);
  for (const [name, value] of pairs)
    for (const s of [name, value]) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(Buffer.byteLength(s), 0);
      parts.push(len, Buffer.from(s));
    }
  return Buffer.concat(parts);
}

function decodeHeaders(raw: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  const u32 = () => {
    const v = raw.readUInt32BE(at);
    at += 4;
    return v;
  };
  const count = u32();
  for (let i = 0; i < count; i++) {
    const name = raw.subarray(at + 4, at + 4 + raw.readUInt32BE(at)).toString("latin1");
    at += 4 + name.length;
    const vlen = u32();
    out.set(name, raw.subarray(at, at + vlen).toString("latin1"));
    at += vlen;
  }
  return out;
}

/** The first protocol of ours the client offered (X-Stream-Protocol-Version, possibly repeated or joined). */
export function pickSpdyProtocol(offered: string | string[] | undefined): string | undefined {
  const list = (Array.isArray(offered) ? offered.join(",") : (offered ?? "")).split(",").map((p) => p.trim());
  return SPDY_EXEC_PROTOCOLS.find((p) => list.includes(p));
}

/**
 * Runs one command over an upgraded SPDY connection (`head`: bytes read past the handshake). `expect` names
 * the channels the query asked for (stdin, stdout, stderr); the error stream is always expected.
 */
export function serveSpdyExec(
  socket: Duplex,
  head: Buffer,
  node: string,
  command: readonly string[],
  expect: ReadonlySet<"stdin" | "stdout" | "stderr">,
): void {
  let buffered = Buffer.alloc(0);
  let compressedIn = Buffer.alloc(0);
  let inflatedLength = 0;
  let headerOut = false;
  const streams = new Map<string, number>();
  let started = false;
  let stdin = "";
  let result: CommandResult | null = null;
  let stdinClosed = !expect.has("stdin");

  const write = (b: Buffer) => {
    if (socket.writable) socket.write(b);
  };
  const control = (type: number, flags: number, data: Buffer) => {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(0x8003, 0);
    h.writeUInt16BE(type, 2);
    h.writeUInt32BE(data.length, 4);
    h[4] = flags;
    write(Buffer.concat([h, data]));
  };
  const data = (id: number, payload: Buffer, fin: boolean) => {
    const h = Buffer.alloc(8);
    h.writeUInt32BE(id & 0x7fffffff, 0);
    h.writeUInt32BE(payload.length, 4);
    h[4] = fin ? FLAG_FIN : 0;
    write(Buffer.concat([h, payload]));
  };
  /** Our header block: stored deflate blocks in one zlib stream preset with the dictionary. */
  const headerBlock = (pairs: readonly [string, string][]) => {
    const raw = encodeHeaders(pairs);
    const stored = Buffer.alloc(5);
    stored[0] = 0x00; // BFINAL 0, BTYPE 00 (stored)
    stored.writeUInt16LE(raw.length, 1);
    stored.writeUInt16LE(~raw.length & 0xffff, 3);
    let prefix = Buffer.alloc(0);
    if (!headerOut) {
      headerOut = true;
      prefix = Buffer.alloc(6);
      prefix[0] = 0x78; // deflate, 32 KiB window
      prefix[1] = 0x20; // FDICT, and 0x7820 % 31 == 0
      prefix.writeUInt32BE(adler32(SPDY_DICTIONARY), 2);
    }
    // Then an empty stored block, as a zlib sync flush ends: a reader returns the block's bytes on reaching it,
    // rather than reading on for the next block header past the frame (Go's flate would, and fail for good).
    return Buffer.concat([prefix, stored, raw, SYNC_FLUSH_MARK]);
  };
  /** The client's next header block, inflated from its zlib stream so far. */
  const readHeaders = (block: Buffer): Map<string, string> => {
    compressedIn = Buffer.concat([compressedIn, block]);
    const all = inflateSync(compressedIn, {
      dictionary: SPDY_DICTIONARY,
      finishFlush: zlibConstants.Z_SYNC_FLUSH,
    });
    const fresh = all.subarray(inflatedLength);
    inflatedLength = all.length;
    return decodeHeaders(fresh);
  };
  const finishIfDone = () => {
    if (!result || !stdinClosed) return;
    const { stdout, stderr, status } = result;
    result = null;
    const out = streams.get("stdout");
    const err = streams.get("stderr");
    if (out !== undefined) data(out, Buffer.from(stdout), true);
    if (err !== undefined) data(err, Buffer.from(stderr), true);
    data(streams.get("error")!, Buffer.from(status), true);
    socket.end();
  };
  const maybeStart = () => {
    if (started || !streams.has("error") || [...expect].some((c) => !streams.has(c))) return;
    started = true;
    if (command[0] !== "cat") {
      result = runCommand(node, command);
      stdinClosed = true;
      return finishIfDone();
    }
    // cat with no stdin asked for (exec without -i) reads EOF at once.
    if (!expect.has("stdin")) onStdinEnd();
  };
  const onStdinEnd = () => {
    stdinClosed = true;
    if (command[0] === "cat") result = { stdout: stdin, stderr: "", status: statusJson(0) };
    finishIfDone();
  };

  const onFrame = (h: Buffer, body: Buffer) => {
    if ((h[0]! & 0x80) === 0) {
      const id = h.readUInt32BE(0) & 0x7fffffff;
      if (id === streams.get("stdin")) {
        stdin += body.toString();
        if (h[4]! & FLAG_FIN) onStdinEnd();
      }
      return;
    }
    const type = h.readUInt16BE(2);
    if (type === Type.SynStream) {
      const id = body.readUInt32BE(0) & 0x7fffffff;
      const headers = readHeaders(body.subarray(10));
      const kind = headers.get("streamtype") ?? "";
      streams.set(kind, id);
      control(Type.SynReply, 0, Buffer.concat([body.subarray(0, 4), headerBlock([])]));
      if (kind === "stdin" && h[4]! & FLAG_FIN) onStdinEnd();
      return maybeStart();
    }
    if (type === Type.Headers) readHeaders(body.subarray(4)); // keeps the zlib stream in step
    if (type === Type.Ping) control(Type.Ping, 0, body);
    if (type === Type.GoAway) socket.end();
  };

  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 8) {
      const len = buffered.readUInt32BE(4) & 0xffffff;
      if (len > MAX_FRAME) return void socket.destroy();
      if (buffered.length < 8 + len) return;
      const h = buffered.subarray(0, 8);
      const body = buffered.subarray(8, 8 + len);
      buffered = buffered.subarray(8 + len);
      try {
        onFrame(h, body);
      } catch {
        return void socket.destroy(); // a malformed frame or header block: this connection is done
      }
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
  if (head.length > 0) onData(head);
}
