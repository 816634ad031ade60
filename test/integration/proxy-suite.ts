// The proxy-mode checks, shared by the loopback run (no root needed: distinct 127.x InternalIPs) and the
// network-namespace e2e (root: every domain in its own namespace, InternalIPs colliding across domains).
// Real clients throughout: curl through CONNECT and as a proxy URL, a WebSocket round trip, a chunked
// stream read while it flows, TLS passed through by SNI.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import net from "node:net";
import tls from "node:tls";
import { expect, it } from "vitest";
import type { Topology } from "../../shared/topology";
import { eventually, fleetStatus, sleep, type TestFleet } from "../helpers/fleet";
import { connectVia, curl, requestOver, streamVia, websocket } from "../helpers/proxy";

export type Door = { host: string; frontPort: number; namePorts: ReadonlyMap<number, number>; node: string };

/** The active cloud gateway's front doors, read from the fleet status. */
export async function activeDoor(t: TestFleet, cloudGateway: string): Promise<Door> {
  return eventually(`an active ${cloudGateway} proxy`, 20_000, async () => {
    const st = await fleetStatus(t.fleet, 500);
    const node = st?.domains.find((d) => d.gateway === cloudGateway)?.active.find((a) => a.type === "proxy")?.nodeName;
    const listen = node ? t.fleet.proxyListen(node) : undefined;
    if (!listen || !node) return undefined;
    const health = await curl([`http://${listen.host}:${listen.frontPort}/healthz`], 2_000);
    return health.status === 200 ? { ...listen, node } : undefined;
  });
}

export type SuiteContext = {
  t: () => TestFleet;
  topology: Topology;
  cloudGateway: string;
  edgeGateway: string;
  edgeNode: string;
};

export function proxySuite(ctx: SuiteContext): void {
  const proxyUrl = (d: Door) => `http://${d.host}:${d.frontPort}`;

  it("reaches every node by name through CONNECT (curl -p -x), each answering with its own name", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    for (const n of ctx.topology.nodes) {
      const r = await eventually(`${n.name} through CONNECT`, 10_000, async () => {
        const res = await curl(["-p", "-x", proxyUrl(door), `http://${n.name}:10255/name`]);
        return res.status === 200 ? res : undefined;
      });
      expect(r.body.trim()).toBe(n.name);
    }
  });

  it("serves absolute URLs as a forward proxy (Prometheus proxy_url), keep-alive across requests", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const r = await curl([
      "-x",
      proxyUrl(door),
      `http://${ctx.edgeNode}:9100/metrics`,
      `http://${ctx.edgeNode}:9100/name`,
    ]);
    expect(r.status).toBe(200);
    expect(r.body).toContain(`node="${ctx.edgeNode}"`);
    expect(r.body.trim().endsWith(ctx.edgeNode)).toBe(true);
  });

  it("passes TLS through untouched: the kubelet's own certificate answers, by CONNECT and by SNI", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const viaConnect = await curl(["-k", "-p", "-x", proxyUrl(door), `https://${ctx.edgeNode}:10250/name`]);
    expect(viaConnect.status).toBe(200);
    expect(viaConnect.body.trim()).toBe(ctx.edgeNode);
    const port = door.namePorts.get(10250)!;
    const subject = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: door.host, port, servername: ctx.edgeNode, rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().subject.CN as string);
        s.destroy();
      });
      s.on("error", reject);
    });
    expect(subject).toBe("raven-kubelet");
  });

  it("routes plain connections on the name-routed ports by Host header", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const port = door.namePorts.get(10255)!;
    const r = await curl(["-H", `Host: ${ctx.edgeNode}:10255`, `http://${door.host}:${port}/name`]);
    expect(r.status).toBe(200);
    expect(r.body.trim()).toBe(ctx.edgeNode);
  });

  it("refuses what it must: IP literals, unknown nodes, ports outside the Gateway's lists (never an open relay)", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const ip = await curl(["-p", "-x", proxyUrl(door), "http://127.0.0.1:10255/"]);
    expect(ip.code).not.toBe(0);
    await expect(connectVia({ host: door.host, port: door.frontPort }, "127.0.0.1:10255")).rejects.toThrow(
      /400 .*IP literal/,
    );
    await expect(connectVia({ host: door.host, port: door.frontPort }, "no-such-node:10255")).rejects.toThrow(
      /404 .*unknown node no-such-node/,
    );
    await expect(connectVia({ host: door.host, port: door.frontPort }, `${ctx.edgeNode}:22`)).rejects.toThrow(
      /403 .*port 22 is not a proxy port/,
    );
    const forward = await curl(["-x", proxyUrl(door), "http://10.1.2.3:9100/metrics"]);
    expect(forward.status).toBe(400);
    expect(forward.body).toMatch(/IP literal/);
  });

  it("carries a WebSocket upgrade both ways (exec/attach style)", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const sock = await connectVia({ host: door.host, port: door.frontPort }, `${ctx.edgeNode}:10255`);
    const ws = await websocket(sock, ctx.edgeNode);
    for (const msg of ["ls -l", "echo raven", "x".repeat(100)]) {
      ws.send(msg);
      expect(await ws.next()).toBe(msg);
    }
    ws.close();
  });

  it("carries a SPDY/3.1 upgrade (kubectl exec/port-forward) through the forward proxy, bytes both ways", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const sock = net.connect(door.frontPort, door.host);
    sock.write(
      `POST http://${ctx.edgeNode}:10255/portForward/default/pod HTTP/1.1\r\nHost: ${ctx.edgeNode}:10255\r\n` +
        `Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`,
    );
    let got = "";
    sock.setEncoding("latin1");
    sock.on("data", (c: string) => (got += c));
    await eventually("101 Switching Protocols", 5_000, () => got.includes("\r\n\r\n"));
    expect(got).toMatch(/^HTTP\/1\.1 101/);
    expect(got).toContain("X-Stream-Protocol-Version: v4.channel.k8s.io");
    got = "";
    sock.write(Buffer.from("\x80\x03\x00\x01spdy frame bytes", "latin1"));
    await eventually("the bytes echoed back", 5_000, () => got === "\x80\x03\x00\x01spdy frame bytes");
    sock.destroy();
  });

  it("delivers a chunked stream as it flows (logs -f), not at the end", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const r = await streamVia(
      { host: door.host, port: door.frontPort },
      `http://${ctx.edgeNode}:10255/logs?follow=true&lines=10&intervalMs=100`,
    );
    expect(r.status).toBe(200);
    const text = r.chunks.map((c) => c.text).join("");
    expect(text.trim().split("\n")).toHaveLength(10);
    // The first line arrived long before the last was produced (~900 ms later).
    expect(r.chunks.at(-1)!.atMs - r.chunks[0]!.atMs).toBeGreaterThan(500);
  });

  it("holds 1,000 channels open at once through one edge gateway, each answering", async () => {
    const door = await activeDoor(ctx.t(), ctx.cloudGateway);
    const N = 1_000;
    const socks = [];
    for (let i = 0; i < N; i += 25) {
      socks.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(25, N - i) }, () =>
            connectVia({ host: door.host, port: door.frontPort }, `${ctx.edgeNode}:10255`, 15_000),
          ),
        )),
      );
    }
    expect(socks).toHaveLength(N);
    const answers = await Promise.all(socks.map((s) => requestOver(s, ctx.edgeNode, "/name")));
    expect(answers.every((a) => a.status === 200 && a.body.trim() === ctx.edgeNode)).toBe(true);
  }, 60_000);

  it("fails a channel through a killed edge gateway within 1 s, and new channels go to the new active", async () => {
    const t = ctx.t();
    const door = await activeDoor(t, ctx.cloudGateway);
    const st = await fleetStatus(t.fleet);
    const victim = st!.domains
      .find((d) => d.gateway === ctx.edgeGateway)!
      .active.find((a) => a.type === "proxy")!.nodeName;
    const sock = await connectVia({ host: door.host, port: door.frontPort }, `${ctx.edgeNode}:10255`);
    sock.write(`GET /logs?follow=true&intervalMs=50 HTTP/1.1\r\nHost: ${ctx.edgeNode}\r\n\r\n`);
    const first = new Promise((r) => sock.once("data", r));
    sock.resume();
    await first;
    // Failed = the stream ends or breaks (the client socket is half-open-capable, so "end" may come alone).
    const closed = new Promise<number>((r) => {
      for (const ev of ["end", "close", "error"]) sock.once(ev, () => r(performance.now()));
    });
    const killedAt = performance.now();
    t.fleet.kill(`gateway-${victim}`);
    expect((await closed) - killedAt).toBeLessThan(1_000);
    const r = await eventually("a request through the new active", 10_000, async () => {
      const res = await curl(["-p", "-x", proxyUrl(door), `http://${ctx.edgeNode}:10255/name`]);
      return res.status === 200 ? res : undefined;
    });
    expect(r.body.trim()).toBe(ctx.edgeNode);
    const after = await fleetStatus(t.fleet);
    expect(
      after!.domains.find((d) => d.gateway === ctx.edgeGateway)!.active.find((a) => a.type === "proxy")!.nodeName,
    ).not.toBe(victim);
    await sleep(1_500); // let the supervisor restart the killed candidate before the next suite
  }, 30_000);
}

export const caOf = (t: TestFleet) => readFileSync(join(t.runDir, "pki", "ca.crt"));
