// bench:proxy's measurement kit against real loopback sockets: sane figures on direct targets, a bulk count
// mismatch caught, HTTP CONNECT through a small proxy written here (split headers, bytes after the header
// block, 403), the standalone targets process, and an sshd + ssh -R tunnel when OpenSSH is installed.
// Sizes are small; no timing is asserted beyond "positive".
import { existsSync, readFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  MIB,
  PathError,
  ProxyConnectError,
  connectTcp,
  connectVia,
  connectViaDialer,
  directDialers,
  measureBulk,
  measureConnRate,
  measureRtt,
  startTargets,
  startTargetsProcess,
  tcpDialer,
  type Targets,
} from "../../bench/proxy-lib";
import { SSHD_PATH, SshStartError, reverseTunnel, startSshd, tunnelCipher } from "../../bench/sshd";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const listen = (server: Server) =>
  new Promise<number>((r) => server.listen(0, "127.0.0.1", () => r((server.address() as { port: number }).port)));
const close = (server: Server) => new Promise<void>((r) => server.close(() => r()));
/** True while the process exists and is not a zombie. */
function isAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** First `n` bytes the socket delivers. */
function readBytes(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    s.on("data", (b: Buffer) => {
      parts.push(b);
      got += b.length;
      if (got >= n) resolve(Buffer.concat(parts).subarray(0, n));
    });
    s.once("error", reject);
  });
}

/**
 * A CONNECT proxy for the tests. "forbidden:*" gets a 403; "greeting:*" gets a 200 whose header block comes
 * in three chunks with "HELLO" right behind it in the last one; anything else "host:port" is relayed to
 * 127.0.0.1:port with half-closes passed through.
 */
function startConnectProxy(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (client) => {
    sockets.add(client);
    client.on("error", () => {});
    let head = Buffer.alloc(0);
    const onData = (b: Buffer) => {
      head = Buffer.concat([head, b]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      client.off("data", onData);
      client.pause();
      const target = /^CONNECT (\S+) HTTP\/1\.1\r\n/.exec(head.toString("latin1"))?.[1] ?? "";
      const [host, port] = target.split(":");
      if (host === "forbidden") {
        client.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      if (host === "greeting") {
        void (async () => {
          client.write("HTTP/1.1 200 Connection estab");
          await sleep(20);
          client.write("lished\r\nX-Test: 1\r");
          await sleep(20);
          client.end("\n\r\nHELLO");
        })();
        return;
      }
      const upstream = createConnection({ host: "127.0.0.1", port: Number(port), allowHalfOpen: true });
      sockets.add(upstream);
      upstream.on("error", () => client.destroy());
      upstream.once("connect", () => {
        client.write("HTTP/1.1 200 Connection established\r\n\r\n");
        const rest = head.subarray(end + 4);
        if (rest.length) upstream.write(rest);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    client.on("data", onData);
  });
  return listen(server).then((port) => ({
    port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await close(server);
    },
  }));
}

let targets: Targets;

beforeAll(async () => {
  targets = await startTargets();
});

afterAll(async () => {
  await targets?.close();
});

describe("measurements on direct loopback targets", () => {
  it("bulk: the sink counts every byte and the throughput is positive", async () => {
    const mbps = await measureBulk(directDialers(targets).sink, 8 * MIB);
    expect(mbps).toBeGreaterThan(0);
    expect(Number.isFinite(mbps)).toBe(true);
  });

  it("bulk: a sink that miscounts fails the measurement", async () => {
    const liar = createServer({ allowHalfOpen: true }, (s) => s.on("data", () => {}).on("end", () => s.end("12")));
    const port = await listen(liar);
    try {
      await expect(measureBulk(tcpDialer("127.0.0.1", port), MIB)).rejects.toThrow(
        /sent 1048576 bytes but the sink counted 12/,
      );
    } finally {
      await close(liar);
    }
  });

  it("rtt: p50 and p99 of 64-byte round trips on one connection", async () => {
    const rtt = await measureRtt(directDialers(targets).echo, 200, 20);
    expect(rtt.p50_us).toBeGreaterThan(0);
    expect(rtt.p99_us).toBeGreaterThanOrEqual(rtt.p50_us);
  });

  it("rtt: the echo server answers requests that arrive in pieces, in order", async () => {
    const s = await connectTcp(targets.host, targets.echoPort);
    const req = Buffer.alloc(128);
    for (let i = 0; i < 128; i++) req[i] = i;
    const answer = readBytes(s, 128);
    s.write(req.subarray(0, 10));
    await sleep(10);
    s.write(req.subarray(10, 100));
    await sleep(10);
    s.write(req.subarray(100));
    expect((await answer).equals(req)).toBe(true);
    s.destroy();
  });

  it("conn rate: connections per second are positive", async () => {
    const perS = await measureConnRate(directDialers(targets).echo, 500, 4);
    expect(perS).toBeGreaterThan(0);
  });

  it("a closed port fails the measurement instead of hanging", async () => {
    const server = createServer();
    const port = await listen(server);
    await close(server);
    await expect(measureConnRate(tcpDialer("127.0.0.1", port), 200, 2)).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe("connectVia (HTTP CONNECT)", () => {
  let proxy: Awaited<ReturnType<typeof startConnectProxy>>;
  beforeAll(async () => {
    proxy = await startConnectProxy();
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it("carries bulk (with half-close) and round trips through the proxy", async () => {
    const sink = connectViaDialer("127.0.0.1", proxy.port, `node-1:${targets.sinkPort}`);
    const echo = connectViaDialer("127.0.0.1", proxy.port, `node-1:${targets.echoPort}`);
    expect(await measureBulk(sink, 8 * MIB)).toBeGreaterThan(0);
    const rtt = await measureRtt(echo, 200, 20);
    expect(rtt.p50_us).toBeGreaterThan(0);
    expect(await measureConnRate(echo, 300, 2)).toBeGreaterThan(0);
  });

  it("handles a 200 whose header block arrives in pieces, keeping the bytes after it", async () => {
    const s = await connectVia("127.0.0.1", proxy.port, "greeting:1");
    expect((await readBytes(s, 5)).toString()).toBe("HELLO");
    s.destroy();
  });

  it("rejects a 403 with the status line", async () => {
    const err = await connectVia("127.0.0.1", proxy.port, "forbidden:22").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyConnectError);
    expect((err as ProxyConnectError).statusLine).toBe("HTTP/1.1 403 Forbidden");
    expect((err as Error).message).toContain("HTTP/1.1 403 Forbidden");
  });

  it("rejects clearly when the proxy hangs up before answering", async () => {
    const mute = createServer((s) => s.once("data", () => s.end()));
    const port = await listen(mute);
    try {
      await expect(connectVia("127.0.0.1", port, "node-1:1")).rejects.toThrow(PathError);
      await expect(connectVia("127.0.0.1", port, "node-1:1")).rejects.toThrow(/closed the connection before answering/);
    } finally {
      await close(mute);
    }
  });
});

describe("standalone targets process", () => {
  it("prints its ports, serves the sink, and exits when stopped", async () => {
    const t = await startTargetsProcess();
    try {
      expect(t.sinkPort).toBeGreaterThan(0);
      expect(await measureBulk(directDialers(t).sink, MIB)).toBeGreaterThan(0);
    } finally {
      await t.stop();
    }
    expect(isAlive(t.pid)).toBe(false);
  }, 30_000);
});

const sshdMissing = !existsSync(SSHD_PATH);
if (sshdMissing)
  console.warn(
    `skipping the ssh -R test: ${SSHD_PATH} is not installed (apt-get install openssh-server, or bash scripts/setup.sh)`,
  );

describe("sshd + ssh -R", () => {
  it.skipIf(sshdMissing)(
    sshdMissing
      ? `carries bytes through a reverse tunnel — SKIPPED: ${SSHD_PATH} missing, install openssh-server`
      : "carries bytes through reverse tunnels (default and chosen cipher), and stop() ends every process",
    async () => {
      const sshd = await startSshd();
      let pids: number[] = [sshd.pid];
      try {
        const sinkTunnel = await reverseTunnel(sshd, targets.sinkPort);
        const gcm = { cipher: "aes128-gcm@openssh.com" };
        expect(tunnelCipher(gcm)).toBe(gcm.cipher);
        expect(() => tunnelCipher({ cipher: "no-such-cipher" })).toThrow(SshStartError);
        const echoTunnel = await reverseTunnel(sshd, targets.echoPort, gcm);
        pids = [sshd.pid, sinkTunnel.pid, echoTunnel.pid];
        expect(await measureBulk(tcpDialer("127.0.0.1", sinkTunnel.port), 8 * MIB)).toBeGreaterThan(0);
        const rtt = await measureRtt(tcpDialer("127.0.0.1", echoTunnel.port), 200, 20);
        expect(rtt.p50_us).toBeGreaterThan(0);
        expect(await measureConnRate(tcpDialer("127.0.0.1", echoTunnel.port), 300, 2)).toBeGreaterThan(0);
      } finally {
        await sshd.stop();
      }
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
      expect(existsSync(sshd.dir)).toBe(false);
    },
    60_000,
  );
});
