// The node target server on 127.0.0.1 with real clients: fetch, http.get on a flowing chunked stream, a
// hand-written RFC 6455 client, a raw SPDY upgrade, TLS with the fleet PKI, and curl.
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors";
import { ensurePki, type PkiFiles } from "../../../shared/pki";
import { startTargetServer, type TargetServer } from "../../../lib/demo-kubelet/server";
import { Opcode } from "../../../lib/demo-kubelet/websocket";
import { connectWebSocket } from "../../helpers/ws-client";

const hasOpenssl = spawnSync("openssl", ["version"]).error === undefined;
const hasCurl = spawnSync("curl", ["--version"]).error === undefined;
const HOST = "127.0.0.1";
let target: TargetServer;
let port: number;
let tlsPort: number;
let pki: PkiFiles | undefined;
let pkiDir: string;
const url = (path: string) => `http://${HOST}:${port}${path}`;

beforeAll(async () => {
  pkiDir = mkdtempSync(join(tmpdir(), "raven-target-"));
  if (hasOpenssl) pki = await ensurePki(join(pkiDir, "pki"));
  const tls = pki ? { key: readFileSync(pki.kubeletKey), cert: readFileSync(pki.kubeletCert) } : undefined;
  target = await startTargetServer({
    node: "node-1",
    host: HOST,
    httpPorts: [0, 0],
    httpsPorts: tls ? [0] : [],
    ...(tls ? { tls } : {}),
  });
  [port] = target.httpPorts as [number];
  tlsPort = target.httpsPorts[0] ?? 0;
}, 20_000);

afterAll(async () => {
  await target?.close();
  rmSync(pkiDir, { recursive: true, force: true });
});

/** One raw exchange: writes `request`, collects everything until the server closes or `untilBytes` arrive. */
function raw(request: string | Buffer, p = port, untilBytes = Infinity): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(p, HOST, () => s.write(request));
    let got = Buffer.alloc(0);
    s.setTimeout(3_000, () => s.destroy(new Error(`timeout; got ${JSON.stringify(got.toString())}`)));
    s.on("data", (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= untilBytes) (s.destroy(), resolve(got.toString("latin1")));
    });
    s.on("close", () => resolve(got.toString("latin1")));
    s.on("error", reject);
  });
}

describe("plain HTTP routes", () => {
  it("binds every requested port and reports them", () => {
    expect(target.httpPorts).toHaveLength(2);
    expect(target.ports).toEqual([...target.httpPorts, ...target.httpsPorts]);
    for (const p of target.ports) expect(p).toBeGreaterThan(0);
  });

  it("answers / and /name with the node name and the x-raven-node header, on every port", async () => {
    for (const path of ["/", "/name"]) {
      for (const p of target.httpPorts) {
        const res = await fetch(`http://${HOST}:${p}${path}`);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
        expect(res.headers.get("x-raven-node")).toBe("node-1");
        expect(await res.text()).toBe("node-1\n");
      }
    }
    expect(await (await fetch(url("/healthz"))).text()).toBe("ok");
  });

  it("serves Prometheus metrics with a request counter that moves", async () => {
    const scrape = async () => await (await fetch(url("/metrics"))).text();
    const first = await scrape();
    expect(first).toContain('node_info{node="node-1"} 1');
    expect(first).toMatch(/# TYPE raven_target_requests_total counter/);
    const count = (text: string) => Number(/raven_target_requests_total\{node="node-1"\} (\d+)/.exec(text)![1]);
    await fetch(url("/"));
    expect(count(await scrape())).toBe(count(first) + 2);
  });

  it("404s unknown paths with a clear body, 405s other methods, 400s bad log queries", async () => {
    const res = await fetch(url("/nope"));
    expect(res.status).toBe(404);
    expect(await res.text()).toMatch(/\/nope is not served by raven target node-1 \(routes: \/, \/name/);
    expect((await fetch(url("/"), { method: "POST", body: "x" })).status).toBe(405);
    for (const q of ["lines=-1", "lines=abc", "intervalMs=0", "follow=maybe"]) {
      const bad = await fetch(url(`/logs?${q}`));
      expect(bad.status).toBe(400);
      expect(await bad.text()).toMatch(/bad \/logs query/);
    }
  });

  it("returns N log lines at once without follow, on /logs and the kubelet containerLogs path", async () => {
    expect(await (await fetch(url("/logs?lines=3"))).text()).toBe("node-1 line 1\nnode-1 line 2\nnode-1 line 3\n");
    expect(await (await fetch(url("/containerLogs/default/pod/c?lines=2"))).text()).toBe(
      "node-1 line 1\nnode-1 line 2\n",
    );
  });

  it("streams followed logs chunked, each line as it is produced", async () => {
    const start = performance.now();
    const arrivals: [number, string][] = [];
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      httpGet(url("/logs?follow=true&lines=5&intervalMs=150"), (res) => {
        res.setEncoding("utf8");
        res.on("data", (d: string) => arrivals.push([performance.now() - start, d]));
        res.on("end", () => resolve(res.headers));
        res.on("error", reject);
      }).on("error", reject);
    });
    expect(headers["transfer-encoding"]).toBe("chunked");
    expect(arrivals.map(([, d]) => d).join("")).toBe([1, 2, 3, 4, 5].map((i) => `node-1 line ${i}\n`).join(""));
    expect(arrivals.length).toBeGreaterThanOrEqual(5);
    const first = arrivals[0]![0];
    const last = arrivals.at(-1)![0];
    expect(last - first).toBeGreaterThanOrEqual(4 * 150 - 30);
    expect(first).toBeLessThan(last - 400);
  });

  it("keeps following until the client goes when lines is not given", async () => {
    const lines = await new Promise<string>((resolve, reject) => {
      const req = httpGet(url("/logs?follow=true&intervalMs=20"), (res) => {
        let got = "";
        res.on("data", (d) => {
          got += d;
          if (got.split("\n").length > 4) (req.destroy(), resolve(got));
        });
      });
      req.on("error", (e) =>
        e.message.includes("aborted") || e.message.includes("socket hang up") ? undefined : reject(e),
      );
    });
    expect(lines.startsWith("node-1 line 1\nnode-1 line 2\nnode-1 line 3\nnode-1 line 4\n")).toBe(true);
  });

  it("survives malformed requests and keeps serving", async () => {
    expect(await raw("GARBAGE\r\n\r\n")).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0, 1, 2]))).toMatch(/^HTTP\/1\.1 400|^$/);
    // A request cut short by the client's FIN still gets its 400 (read it, or the FIN after it never arrives).
    let halfReply = "";
    const half = connect(port, HOST, () => half.end("GET / HT"));
    half.on("data", (d) => (halfReply += d));
    await new Promise((r) => half.on("close", r));
    expect(halfReply).toMatch(/^HTTP\/1\.1 400/);
    if (tlsPort) await raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n", tlsPort); // plaintext on the TLS port: just closed
    expect(await (await fetch(url("/name"))).text()).toBe("node-1\n");
  });
});

describe("upgrades", () => {
  it("echoes WebSocket text, binary (64-bit length), fragments, answers ping and close", async () => {
    const ws = await connectWebSocket(port);
    expect(ws.response).toContain("x-raven-node: node-1");
    ws.send(Opcode.Text, "hello");
    expect(await ws.next()).toEqual({ fin: true, opcode: Opcode.Text, payload: Buffer.from("hello") });
    const big = Buffer.alloc(70_000, 0xab);
    ws.send(Opcode.Binary, big);
    const back = await ws.next();
    expect(back.opcode).toBe(Opcode.Binary);
    expect(back.payload.equals(big)).toBe(true);
    ws.send(Opcode.Text, "ab", false);
    ws.send(Opcode.Continuation, "cd");
    expect(await ws.next()).toEqual({ fin: false, opcode: Opcode.Text, payload: Buffer.from("ab") });
    expect(await ws.next()).toEqual({ fin: true, opcode: Opcode.Continuation, payload: Buffer.from("cd") });
    ws.send(Opcode.Ping, "p1");
    expect(await ws.next()).toEqual({ fin: true, opcode: Opcode.Pong, payload: Buffer.from("p1") });
    ws.send(Opcode.Close, Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65]));
    expect(await ws.next()).toEqual({ fin: true, opcode: Opcode.Close, payload: Buffer.from([0x03, 0xe8]) });
    await ws.ended;
  });

  it("closes with 1002 on an unmasked client frame", async () => {
    const ws = await connectWebSocket(port);
    ws.socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
    const f = await ws.next();
    expect(f.opcode).toBe(Opcode.Close);
    expect(f.payload.readUInt16BE(0)).toBe(1002);
    await ws.ended;
  });

  it("refuses a bad WebSocket handshake and unknown upgrades with 400", async () => {
    const head = (upgrade: string, extra = "") =>
      `GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\n${extra}\r\n`;
    expect(await raw(head("websocket", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"))).toMatch(
      /^HTTP\/1\.1 400[\s\S]*bad WebSocket handshake/,
    );
    expect(await raw(head("h2c"))).toMatch(/^HTTP\/1\.1 400[\s\S]*unsupported upgrade "h2c"/);
  });

  it("switches to SPDY/3.1 off /exec/ and echoes raw bytes both ways, including bytes sent with the request", async () => {
    const request =
      "POST /portForward/default/pod HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io, v3.channel.k8s.io\r\n\r\n";
    const payload = Buffer.from([0x80, 0x03, 0x00, 0x01, 0x00, 0xff, 0x41]);
    const sock = connect(port, HOST, () => sock.write(Buffer.concat([Buffer.from(request), payload])));
    let got = Buffer.alloc(0);
    await new Promise<void>((resolve) =>
      sock.on("data", (d) => {
        got = Buffer.concat([got, d]);
        const end = got.indexOf("\r\n\r\n");
        if (end >= 0 && got.length >= end + 4 + payload.length) resolve();
      }),
    );
    const end = got.indexOf("\r\n\r\n");
    const head = got.subarray(0, end).toString();
    expect(head).toMatch(/^HTTP\/1\.1 101 Switching Protocols/);
    expect(head).toContain("Upgrade: SPDY/3.1");
    expect(head).toContain("X-Stream-Protocol-Version: v4.channel.k8s.io");
    expect(got.subarray(end + 4).equals(payload)).toBe(true);
    const more = await new Promise<Buffer>((resolve) => {
      sock.once("data", resolve);
      sock.write("second write");
    });
    expect(more.toString()).toBe("second write");
    sock.end();
    await new Promise((r) => sock.on("close", r));
  });
});

describe.skipIf(!hasOpenssl)(
  `TLS port with the fleet kubelet certificate${hasOpenssl ? "" : " (skipped: no openssl CLI)"}`,
  () => {
    it("serves HTTPS to a client pinning the fleet CA", async () => {
      const body = await new Promise<string>((resolve, reject) => {
        httpsGet({ host: HOST, port: tlsPort, path: "/name", ca: readFileSync(pki!.caCert) }, (res) => {
          let b = "";
          res.on("data", (d) => (b += d));
          res.on("end", () => resolve(b));
        }).on("error", reject);
      });
      expect(body).toBe("node-1\n");
    });

    it("upgrades to WebSocket over TLS", async () => {
      const ws = await connectWebSocket(tlsPort, {
        tls: { ca: readFileSync(pki!.caCert), servername: "node-1.raven.local" },
      });
      ws.send(Opcode.Text, "over tls");
      expect((await ws.next()).payload.toString()).toBe("over tls");
      ws.socket.destroy();
    });
  },
);

const curl = (args: string[]) =>
  new Promise<string>((resolve, reject) =>
    execFile("curl", ["-sS", "--max-time", "5", ...args], (err, out, stderr) =>
      err ? reject(new Error(stderr || err.message)) : resolve(out),
    ),
  );

describe.skipIf(!hasCurl)(`curl${hasCurl ? "" : " (skipped: curl not installed)"}`, () => {
  it("gets the name, headers and a followed log stream", async () => {
    expect(await curl([url("/name")])).toBe("node-1\n");
    const head = await curl(["-i", url("/")]);
    expect(head).toMatch(/x-raven-node: node-1/i);
    expect(await curl(["-N", url("/logs?follow=true&lines=3&intervalMs=20")])).toBe(
      "node-1 line 1\nnode-1 line 2\nnode-1 line 3\n",
    );
  });

  it.skipIf(!hasOpenssl)("verifies the TLS port against ca.crt", async () => {
    expect(await curl(["--cacert", pki!.caCert, `https://${HOST}:${tlsPort}/name`])).toBe("node-1\n");
    expect(
      await curl([
        "--cacert",
        pki!.caCert,
        "--resolve",
        `n1.raven.local:${tlsPort}:${HOST}`,
        `https://n1.raven.local:${tlsPort}/healthz`,
      ]),
    ).toBe("ok");
  });
});

describe("keep-alive", () => {
  /** Two requests on one connection, `gapMs` apart; resolves with both raw answers (the second "" if closed). */
  function twoOnOne(p: number, path2: string, gapMs: number): Promise<[string, string]> {
    return new Promise((resolve, reject) => {
      const s = connect(p, HOST, () => s.write(`GET /name HTTP/1.1\r\nHost: t\r\n\r\n`));
      const answers: string[] = [""];
      s.setTimeout(5_000, () => s.destroy(new Error("timeout")));
      s.on("data", (d) => {
        answers[answers.length - 1] += d.toString("latin1");
        if (answers.length === 1 && answers[0]!.endsWith("node-1\n")) {
          answers.push("");
          setTimeout(() => !s.destroyed && s.write(`GET ${path2} HTTP/1.1\r\nHost: t\r\n\r\n`), gapMs);
        }
      });
      s.on("close", () => resolve([answers[0]!, answers[1] ?? ""]));
      s.on("error", reject);
    });
  }

  it("closes a connection idle for idleTimeoutMs, unannounced; a busy one stays", async () => {
    const idle = await startTargetServer({
      node: "node-1",
      host: HOST,
      httpPorts: [0],
      httpsPorts: [],
      idleTimeoutMs: 300,
    });
    try {
      const [p] = idle.httpPorts as [number];
      const [first, late] = await twoOnOne(p, "/name", 600);
      expect(first).toMatch(/^HTTP\/1.1 200/);
      expect(first.toLowerCase()).not.toContain("keep-alive: timeout");
      expect(late).toBe("");
      const [, soon] = await twoOnOne(p, "/name", 50);
      expect(soon).toMatch(/^HTTP\/1.1 200/);
    } finally {
      await idle.close();
    }
    await expect(
      startTargetServer({ node: "n", host: HOST, httpPorts: [0], httpsPorts: [], idleTimeoutMs: 0 }),
    ).rejects.toThrow(/config idleTimeoutMs/);
  });

  it("answers /close-reused on a connection's first request and closes the connection on a later one", async () => {
    expect(await raw(`GET /close-reused HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`)).toMatch(
      /200 OK[\s\S]*node-1/,
    );
    const [first, second] = await twoOnOne(port, "/close-reused", 0);
    expect(first).toMatch(/^HTTP\/1.1 200/);
    expect(second).toBe("");
  });
});

describe("lifecycle", () => {
  it("rejects bad options with a ConfigError naming the key", async () => {
    await expect(startTargetServer({ node: "n", host: HOST, httpPorts: [], httpsPorts: [0] })).rejects.toThrow(
      /config tls/,
    );
    await expect(startTargetServer({ node: "n", host: HOST, httpPorts: [70000], httpsPorts: [] })).rejects.toThrow(
      ConfigError,
    );
    await expect(startTargetServer({ node: "", host: HOST, httpPorts: [0], httpsPorts: [] })).rejects.toThrow(
      /config node/,
    );
  });

  it("fails cleanly when a port is taken, closing what it had bound", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, HOST, r));
    const taken = (blocker.address() as { port: number }).port;
    await expect(startTargetServer({ node: "n", host: HOST, httpPorts: [0, taken], httpsPorts: [] })).rejects.toThrow(
      new RegExp(`config httpPorts: cannot listen on 127\\.0\\.0\\.1:${taken}`),
    );
    await new Promise((r) => blocker.close(r));
  });

  it("close() ends open log streams and WebSocket connections", async () => {
    const t = await startTargetServer({ node: "n2", host: HOST, httpPorts: [0], httpsPorts: [] });
    const p = t.ports[0]!;
    const ws = await connectWebSocket(p);
    const streamEnded = new Promise<void>((resolve, reject) => {
      httpGet(`http://${HOST}:${p}/logs?follow=true&intervalMs=10`, (res) => {
        res.once("data", () => void t.close());
        res.on("close", () => resolve());
        res.on("data", () => {});
      }).on("error", (e) => (/hang up|aborted|ECONNRESET/.test(e.message) ? resolve() : reject(e)));
    });
    await streamEnded;
    await ws.ended;
    await t.close();
  });
});
