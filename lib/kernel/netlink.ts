// Sockets and files inside a network namespace, through the raven_netns addon (native/netns): an rtnetlink
// socket for requests and dumps, an rtnetlink monitor, a sysctl file, and a raw ICMP socket for the tunnel
// probe. None of them spawns a process; each lives in the namespace it was opened in.
//
// - NetlinkSocket.run is synchronous: the kernel answers rtnetlink requests in the sender's context, so a
//   request or a dump of a node's namespace takes tens of microseconds (bounded by timeoutMs). A dump that a
//   concurrent change interrupted is read again.
// - A monitor calls onChange once per burst of kernel events it has drained, and also when it fell behind
//   (ENOBUFS: events were lost, so the caller must read the state again anyway).
// - The pinger matches replies by its own ICMP id and the sequence number; a reply that never comes resolves
//   null after the timeout.
import { closeSync, constants as fsConstants, readSync, writeSync } from "node:fs";
import { randomInt } from "node:crypto";
import { systemClock, type Clock, type TimerHandle } from "../../shared/clock";
import { NetlinkError } from "../../shared/errors";
import { loadNativeAddon } from "../../shared/native-addon";
import { echoRequest, parseEchoReply, repliesOf, type NlMessage, type Request } from "./rtnetlink";

type Addon = {
  socketIn(ns: string | null, family: number, type: number, protocol: number): number;
  openIn(ns: string | null, path: string, flags: number): number;
  bindNetlink(fd: number, groups: number): void;
  bindInet(fd: number, ipv4: string): void;
  send(fd: number, data: Buffer, ipv4?: string): number;
  recv(fd: number): Buffer | null;
  transact(fd: number, request: Buffer, seq: number, timeoutMs: number): Buffer;
  watch(fd: number, onReadable: (status: number) => void): unknown;
  unwatch(handle: unknown): void;
};

const ADDON_FILE = "native/build/raven_netns.node";
const AF_NETLINK = 16;
const AF_INET = 2;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;
const IPPROTO_ICMP = 1;
const DUMP_RETRIES = 3;

let addon: Addon | undefined;
const native = (): Addon => (addon ??= loadNativeAddon<Addon>(ADDON_FILE, "tunnel mode's netlink access"));

/** One rtnetlink socket in `netns` (the process's own when left out). */
export class NetlinkSocket {
  private seq = randomInt(1, 1 << 30);
  private fd: number | null;

  constructor(
    readonly netns?: string,
    private readonly timeoutMs = 5_000,
  ) {
    const a = native();
    this.fd = a.socketIn(netns ?? null, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    try {
      a.bindNetlink(this.fd, 0);
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
  }

  /** Sends `req` and returns its data replies; a refusal is a NetlinkError naming the request. */
  run(req: Request): NlMessage[] {
    if (this.fd === null) throw new NetlinkError(req.what, "EBADF", "the netlink socket is closed");
    for (let attempt = 1; ; attempt++) {
      const seq = (this.seq = (this.seq + 1) >>> 0 || 1);
      let reply: Buffer;
      try {
        reply = native().transact(this.fd, req.build(seq), seq, this.timeoutMs);
      } catch (err) {
        const e = err as Error & { code?: string };
        throw new NetlinkError(req.what, e.code ?? "EIO", e.message);
      }
      try {
        return repliesOf(req.what, reply);
      } catch (err) {
        if (!(req.dump && err instanceof NetlinkError && err.errno === "EINTR" && attempt < DUMP_RETRIES)) throw err;
      }
    }
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}

/** Calls `onChange` after kernel events of `groups` (RTMGRP bits) in `netns`, until the returned function is called. */
export function watchNetlink(netns: string | undefined, groups: number, onChange: () => void): () => void {
  const a = native();
  const fd = a.socketIn(netns ?? null, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  let handle: unknown = null;
  try {
    a.bindNetlink(fd, groups);
    handle = a.watch(fd, () => {
      let any = false;
      try {
        while (a.recv(fd) !== null) any = true;
      } catch {
        any = true; // ENOBUFS: we fell behind and lost events; the caller reads the state again
      }
      if (any) onChange();
    });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    a.unwatch(handle);
    closeSync(fd);
  };
}

/** A file opened inside `netns` (a /proc/sys/net sysctl reads and writes that namespace's value). */
export class NetnsFile {
  private fd: number | null;

  constructor(
    netns: string | undefined,
    readonly path: string,
  ) {
    this.fd = native().openIn(netns ?? null, path, fsConstants.O_RDWR);
  }

  read(): string {
    const buf = Buffer.alloc(256);
    const n = readSync(this.fd!, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString("utf8").trim();
  }

  write(value: string): void {
    writeSync(this.fd!, `${value}\n`, 0);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

type Pending = { resolve: (rttMs: number | null) => void; sentAt: number; timer: TimerHandle };

/**
 * ICMP echo from a source address inside `netns` (one raw socket per source, opened on first use): the round
 * trip in ms, or null when no reply came within timeoutMs.
 */
export class Pinger {
  private readonly sockets = new Map<string, { fd: number; handle: unknown }>();
  private readonly pending = new Map<string, Pending>();
  private readonly id = randomInt(1, 0xffff);
  private seq = 0;

  constructor(
    readonly netns: string | undefined,
    private readonly clock: Clock = systemClock,
  ) {}

  ping(src: string, dst: string, timeoutMs = 1_000): Promise<number | null> {
    const a = native();
    let fd: number;
    try {
      fd = this.socketFor(src);
    } catch {
      return Promise.resolve(null); // the source address is not there (yet): nothing can answer
    }
    const seq = (this.seq = (this.seq + 1) & 0xffff);
    const key = `${dst}#${seq}`;
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(key);
        resolve(null);
      }, timeoutMs);
      this.pending.set(key, { resolve, sentAt: this.clock.now(), timer });
      try {
        a.send(fd, echoRequest(this.id, seq), dst);
      } catch {
        this.clock.clearTimeout(timer);
        this.pending.delete(key);
        resolve(null); // no route, or the tunnel device is gone: no answer
      }
    });
  }

  private socketFor(src: string): number {
    const known = this.sockets.get(src);
    if (known) return known.fd;
    const a = native();
    const fd = a.socketIn(this.netns ?? null, AF_INET, SOCK_RAW, IPPROTO_ICMP);
    try {
      a.bindInet(fd, src);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    const handle = a.watch(fd, () => this.drain(fd));
    this.sockets.set(src, { fd, handle });
    return fd;
  }

  private drain(fd: number): void {
    for (let pkt = native().recv(fd); pkt !== null; pkt = native().recv(fd)) {
      const r = parseEchoReply(pkt);
      if (!r || r.id !== this.id) continue;
      const key = `${r.from}#${r.seq}`;
      const p = this.pending.get(key);
      if (!p) continue;
      this.pending.delete(key);
      this.clock.clearTimeout(p.timer);
      p.resolve(this.clock.now() - p.sentAt);
    }
  }

  close(): void {
    for (const p of this.pending.values()) {
      this.clock.clearTimeout(p.timer);
      p.resolve(null);
    }
    this.pending.clear();
    for (const { fd, handle } of this.sockets.values()) {
      native().unwatch(handle);
      closeSync(fd);
    }
    this.sockets.clear();
  }
}
