// The native relay (native/ through native-relay.ts) on real loopback sockets. The frame format is checked
// against an independent JavaScript implementation (node:crypto AES-256-GCM) that plays the peer gateway, so
// tampering, truncation and the edge's gate can be driven byte by byte; two relays back to back check the whole
// path: bytes both ways, half-close, backpressure, abort, and what Node had read before the handover.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  NativeRelay,
  channelKeys,
  type RelayEnd,
  type SealKeys,
} from "../../../services/gateway-actor/proxy/native-relay";
import type { ChannelError } from "../../../shared/errors";
import { ensurePki, loadPki } from "../../../shared/pki";
import { eventually } from "../../helpers/fleet";

const DATA = 0;
const END = 1;

/** One frame as the relay seals it: u8 type | u24 length | AES-256-GCM ciphertext | 16-byte tag. */
function sealFrame(key: Buffer, seq: number, type: number, data: Buffer): Buffer {
  const head = Buffer.from([type, (data.length >> 16) & 0xff, (data.length >> 8) & 0xff, data.length & 0xff]);
  const c = createCipheriv("aes-256-gcm", key, nonce(seq));
  c.setAAD(head);
  const body = Buffer.concat([c.update(data), c.final()]);
  return Buffer.concat([head, body, c.getAuthTag()]);
}

/** Parses and opens every whole frame in `buf` (from sequence `seq`); returns them and the bytes left over. */
function openFrames(key: Buffer, seq: number, buf: Buffer): { frames: { type: number; data: Buffer }[]; rest: Buffer } {
  const frames: { type: number; data: Buffer }[] = [];
  let p = 0;
  while (buf.length - p >= 4) {
    const len = (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!;
    if (buf.length - p < 4 + len + 16) break;
    const d = createDecipheriv("aes-256-gcm", key, nonce(seq++));
    d.setAAD(buf.subarray(p, p + 4));
    d.setAuthTag(buf.subarray(p + 4 + len, p + 4 + len + 16));
    frames.push({ type: buf[p]!, data: Buffer.concat([d.update(buf.subarray(p + 4, p + 4 + len)), d.final()]) });
    p += 4 + len + 16;
  }
  return { frames, rest: buf.subarray(p) };
}

function nonce(seq: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(seq), 4);
  return iv;
}

const keys = (): { cloud: SealKeys; edge: SealKeys } => {
  const a = randomBytes(32); // edge -> cloud
  const b = randomBytes(32); // cloud -> edge
  return { cloud: { seal: b, open: a }, edge: { seal: a, open: b } };
};

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A connected TCP pair on loopback: [dialer, accepted]. */
async function tcpPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
  const dialer = net.connect({
    port: (server.address() as net.AddressInfo).port,
    host: "127.0.0.1",
    allowHalfOpen: true,
  });
  await new Promise((r) => dialer.once("connect", r));
  const other = await accepted;
  server.close();
  for (const s of [dialer, other]) {
    s.on("error", () => undefined);
    cleanup.push(() => s.destroy());
  }
  return [dialer, other];
}

/** Everything `s` sends until it ends (or breaks: then `error` names how). */
function collect(s: net.Socket): Promise<{ data: Buffer; error?: string }> {
  const parts: Buffer[] = [];
  s.on("data", (b: Buffer) => parts.push(b));
  return new Promise((resolve) => {
    s.once("end", () => resolve({ data: Buffer.concat(parts) }));
    s.once("error", (err: NodeJS.ErrnoException) =>
      resolve({ data: Buffer.concat(parts), error: err.code ?? err.message }),
    );
  });
}

/**
 * Whether the relay reset `s` (rather than ending it cleanly). Node reports a reset that arrives behind data as
 * a plain end, so after an end a write must fail: a socket that was only half-closed would take it.
 */
async function wasReset(s: net.Socket, seen: Promise<{ data: Buffer; error?: string }>): Promise<boolean> {
  const r = await seen;
  if (r.error) return r.error === "ECONNRESET" || r.error === "EPIPE";
  return new Promise((resolve) => {
    s.once("error", () => resolve(true));
    s.write("after the end", (err) => err || setTimeout(() => resolve(false), 300));
  });
}

const ended = () => {
  let resolve!: (e: RelayEnd) => void;
  const promise = new Promise<RelayEnd>((r) => (resolve = r));
  return { promise, onEnd: resolve };
};

/**
 * client <-> [cloud relay] <-> link <-> [edge relay] <-> target, the way the gateways join them: the cloud seals
 * first, the edge is gated.
 */
async function path(opts: { sealed?: boolean } = {}) {
  const sealed = opts.sealed ?? true;
  const [client, cloudPlain] = await tcpPair();
  const [linkEdge, linkCloud] = await tcpPair();
  const [edgePlain, target] = await tcpPair();
  const k = keys();
  const relay = NativeRelay.get();
  const cloudEnd = ended();
  const edgeEnd = ended();
  const edge = relay.join(edgePlain, linkEdge, sealed ? { keys: k.edge, gated: true } : {}, edgeEnd.onEnd);
  const cloud = relay.join(cloudPlain, linkCloud, sealed ? { keys: k.cloud } : {}, cloudEnd.onEnd);
  return { client, target, cloud, edge, cloudEnd: cloudEnd.promise, edgeEnd: edgeEnd.promise };
}

/** The edge's relay (gated), with the test playing the cloud gateway on the link (`peer`). */
async function edgeFacingTest() {
  const [edgePlain, target] = await tcpPair();
  const [linkEdge, peer] = await tcpPair();
  const k = keys();
  const end = ended();
  NativeRelay.get().join(edgePlain, linkEdge, { keys: k.edge, gated: true }, end.onEnd);
  return { target, peer, k, end: end.promise };
}

describe("native relay", () => {
  it("carries bytes both ways and each side's half-close, then reports what it carried", async () => {
    const p = await path();
    const atTarget = collect(p.target);
    const atClient = collect(p.client);
    p.client.end("ping from the client");
    expect((await atTarget).data.toString()).toBe("ping from the client");
    p.target.end("pong from the target"); // the target answers after the client's end: half-close carried over
    expect((await atClient).data.toString()).toBe("pong from the target");
    const [cloud, edge] = await Promise.all([p.cloudEnd, p.edgeEnd]);
    expect(cloud).toEqual({ error: undefined, bytesToPeer: 20, bytesToPlain: 20 });
    expect(edge).toEqual({ error: undefined, bytesToPeer: 20, bytesToPlain: 20 });
  });

  it("moves 64 MiB intact both ways at once, sealed and plain", async () => {
    for (const sealed of [true, false]) {
      const p = await path({ sealed });
      const up = randomBytes(64 * 1024 * 1024);
      const down = randomBytes(8 * 1024 * 1024 + 3);
      const atTarget = collect(p.target);
      const atClient = collect(p.client);
      p.client.end(up);
      p.target.end(down);
      expect((await atTarget).data.equals(up)).toBe(true);
      expect((await atClient).data.equals(down)).toBe(true);
      expect((await p.cloudEnd).bytesToPeer).toBe(up.length);
    }
  });

  it("lets a target that speaks first through once the cloud's first frame opens the edge's gate", async () => {
    const { target, peer, k } = await edgeFacingTest();
    target.write("220 banner from a server that speaks first\r\n");
    const seen: Buffer[] = [];
    peer.on("data", (b: Buffer) => seen.push(b));
    await new Promise((r) => setTimeout(r, 150));
    expect(Buffer.concat(seen).length).toBe(0); // gated: nothing sealed before the cloud has spoken
    peer.write(sealFrame(k.cloud.seal, 0, DATA, Buffer.alloc(0)));
    await eventually(
      "the banner, sealed",
      5_000,
      async () => openFrames(k.cloud.open, 0, Buffer.concat(seen)).frames.length > 0,
    );
    expect(openFrames(k.cloud.open, 0, Buffer.concat(seen)).frames[0]!.data.toString()).toMatch(/^220 banner/);
  });

  for (const [what, bytes, message] of [
    [
      "a frame that fails authentication",
      (k: SealKeys) => flipLastBit(sealFrame(k.seal, 0, DATA, Buffer.from("hello"))),
      /failed authentication/,
    ],
    [
      "a frame sealed out of sequence (a gap)",
      (k: SealKeys) => sealFrame(k.seal, 1, DATA, Buffer.from("hello")),
      /failed authentication/,
    ],
    ["a malformed frame header", () => Buffer.from([7, 0, 0, 1, 0, 0]), /malformed frame/],
    ["an oversized frame", () => Buffer.from([0, 0x02, 0, 0]), /malformed frame/],
    [
      "bytes after the end frame",
      (k: SealKeys) => Buffer.concat([sealFrame(k.seal, 0, END, Buffer.alloc(0)), Buffer.from("x")]),
      /after the end frame/,
    ],
  ] as const) {
    it(`resets both sides on ${what}`, async () => {
      const { target, peer, k, end } = await edgeFacingTest();
      const atTarget = collect(target);
      const atPeer = collect(peer);
      peer.write(bytes(k.cloud));
      const e = await end;
      expect(e.error?.message).toMatch(message);
      expect((e.error as ChannelError).code).toBe("PROTOCOL");
      expect(await wasReset(target, atTarget)).toBe(true);
      expect(await wasReset(peer, atPeer)).toBe(true);
      expect((await atTarget).data.length).toBe(0); // nothing of a bad frame reaches the target
    });
  }

  it("treats a peer connection that ends without an end frame as truncated", async () => {
    const { target, peer, k, end } = await edgeFacingTest();
    const atTarget = collect(target);
    peer.end(sealFrame(k.cloud.seal, 0, DATA, Buffer.from("partial")));
    expect((await end).error?.message).toMatch(/without an end frame \(truncated\)/);
    expect((await atTarget).data.toString()).toBe("partial");
    expect(await wasReset(target, atTarget)).toBe(true);
  });

  it("stops reading the client while the target does not read, and delivers everything once it does", async () => {
    const p = await path();
    p.target.pause();
    const total = 256 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let queued = 0;
    const write = () => {
      while (queued < total && p.client.write(chunk)) queued += chunk.length;
      if (queued < total) p.client.once("drain", () => ((queued += chunk.length), write()));
      else p.client.end();
    };
    write();
    // Taken by the kernel (client send buffer, both relays' buffers and sockets): bounded, far below what was offered.
    await new Promise((r) => setTimeout(r, 1_000));
    const accepted = p.client.bytesWritten - p.client.writableLength;
    await new Promise((r) => setTimeout(r, 500));
    expect(p.client.bytesWritten - p.client.writableLength).toBe(accepted);
    expect(accepted).toBeLessThan(32 * 1024 * 1024);
    let got = 0;
    p.target.on("data", (b: Buffer) => (got += b.length));
    p.target.resume();
    await new Promise((r) => p.target.once("end", r));
    expect(got).toBe(total);
  });

  it("sends what Node read before the handover first, and the preloads ahead of everything", async () => {
    const [client, cloudPlain] = await tcpPair();
    const [linkEdge, linkCloud] = await tcpPair();
    const [edgePlain, target] = await tcpPair();
    const k = keys();
    client.write("early bytes, ");
    await eventually("Node has read the early bytes", 5_000, async () => cloudPlain.readableLength > 0);
    const atClient = collect(client);
    const atTarget = collect(target);
    NativeRelay.get().join(edgePlain, linkEdge, { keys: k.edge, gated: true }, () => undefined);
    NativeRelay.get().join(
      cloudPlain,
      linkCloud,
      { keys: k.cloud, toPeer: Buffer.from("head, "), toPlain: Buffer.from("HTTP/1.1 200 OK\r\n\r\n") },
      () => undefined,
    );
    client.end("late bytes");
    target.end("answer");
    expect((await atTarget).data.toString()).toBe("head, early bytes, late bytes");
    expect((await atClient).data.toString()).toBe("HTTP/1.1 200 OK\r\n\r\nanswer");
  });

  it("carries preloads larger than a frame, sealed in order ahead of the sockets' own bytes", async () => {
    const [client, cloudPlain] = await tcpPair();
    const [linkEdge, linkCloud] = await tcpPair();
    const [edgePlain, target] = await tcpPair();
    const k = keys();
    const head = randomBytes(200 * 1024 + 5); // a request head and body read before the channel existed
    const answer = randomBytes(100 * 1024);
    const atClient = collect(client);
    const atTarget = collect(target);
    NativeRelay.get().join(edgePlain, linkEdge, { keys: k.edge, gated: true }, () => undefined);
    NativeRelay.get().join(cloudPlain, linkCloud, { keys: k.cloud, toPeer: head, toPlain: answer }, () => undefined);
    client.end("tail");
    target.end("reply");
    expect((await atTarget).data.equals(Buffer.concat([head, Buffer.from("tail")]))).toBe(true);
    expect((await atClient).data.equals(Buffer.concat([answer, Buffer.from("reply")]))).toBe(true);
  });

  it("carries out an abort that comes before the handover is done", async () => {
    const p = await path();
    const atClient = collect(p.client);
    p.cloud.abort(); // the sockets are still Node's: the handover fails on them
    expect((await p.cloudEnd).error?.message).toMatch(/before it was handed over/);
    expect((await atClient).error ?? "end").toMatch(/ECONNRESET|end/);
  });

  it("aborts a channel: both ends see a reset and the end names it", async () => {
    const p = await path();
    const atClient = collect(p.client);
    const atTarget = collect(p.target);
    p.client.write("x");
    await eventually("a byte through", 5_000, async () => p.target.bytesRead > 0);
    p.cloud.abort();
    const cloudEnd = await p.cloudEnd;
    expect(cloudEnd.error?.message).toMatch(/closed by the gateway/);
    expect((cloudEnd.error as ChannelError).code).toBe("CLOSED");
    expect(await wasReset(p.client, atClient)).toBe(true);
    // The cloud's reset reaches the edge as a broken peer connection, which resets the target too.
    expect((await p.edgeEnd).error).toBeDefined();
    expect(await wasReset(p.target, atTarget)).toBe(true);
  });

  it("fails the handover, destroying both sockets, when one closes before its writes are flushed", async () => {
    const [a, b] = await tcpPair();
    const [c] = await tcpPair();
    b.destroy();
    const end = ended();
    NativeRelay.get().join(b, c, {}, end.onEnd);
    expect((await end.promise).error?.message).toMatch(/closed before it was handed over/);
    expect(c.destroyed).toBe(true);
    a.destroy();
  });
});

describe("channelKeys", () => {
  const dir = mkdtempSync(join(tmpdir(), "raven-relay-keys-"));
  let pki: ReturnType<typeof loadPki>;
  beforeAll(async () => {
    await ensurePki(dir);
    pki = loadPki(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("gives both ends of a TLS connection the same keys, crossed, and other keys for another channel id", async () => {
    const server = tls.createServer({ key: pki.proxy.key, cert: pki.proxy.cert });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const accepted = new Promise<tls.TLSSocket>((r) => server.once("secureConnection", r));
    const client = tls.connect({
      port: (server.address() as net.AddressInfo).port,
      host: "127.0.0.1",
      ca: pki.caCert,
      servername: "raven-proxy",
    });
    await new Promise((r) => client.once("secureConnect", r));
    const srv = await accepted;
    const c = channelKeys(client, "cloud-gw-1-7", "client");
    const s = channelKeys(srv, "cloud-gw-1-7", "server");
    expect(c.seal.equals(s.open) && c.open.equals(s.seal)).toBe(true);
    expect(c.seal.equals(c.open)).toBe(false);
    expect(channelKeys(client, "cloud-gw-1-8", "client").seal.equals(c.seal)).toBe(false);
    client.destroy();
    expect(() => channelKeys(client, "cloud-gw-1-9", "client")).toThrow(/closed before the keys were derived/);
    srv.destroy();
    server.close();
  });
});

function flipLastBit(b: Buffer): Buffer {
  b[b.length - 1]! ^= 1;
  return b;
}
