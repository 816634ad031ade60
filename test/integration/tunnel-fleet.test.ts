// Tunnel mode end to end (root, iproute2, strongSwan): a real fleet with a cloud domain and two edge domains
// whose node IPs collide; each edge domain has two gateway candidates and a non-gateway node; every node has
// its own host-network namespace and a "pod" namespace in its pod CIDR. The node actors keep VXLAN toward
// their domain's active gateway, the active gateways run IPsec (IKEv2 PSK, ESP in UDP, kernel-libipsec)
// to each other, driven by TunnelActors. TCP and ICMP from a pod on edge-a's plain node reach pods on
// edge-b's and the cloud's plain nodes; an HTTP metrics endpoint in an edge pod is scraped from the cloud;
// `raven status` shows the tunnels. Then edge-a's active gateway actor is SIGKILLed: traffic resumes through
// the new gateway with no manual action.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTopology } from "../../shared/topology";
import { decode, subjects, type GatewayTunnel } from "../../shared/protocol";
import type { NatsConnection } from "../../shared/nats";
import { REPO_ROOT } from "../../services/fleet/build";
import { isPidAlive, nsExec } from "../../services/fleet/netns";
import { eventually, fleetStatus, startTestFleet, type TestFleet } from "../helpers/fleet";

function skipReason(): string | null {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "needs root";
  if (spawnSync("ip", ["-V"]).error) return "needs iproute2";
  if (spawnSync("/usr/lib/ipsec/charon", ["--version"]).error || spawnSync("/usr/sbin/swanctl", ["--version"]).error) return "needs strongSwan (scripts/setup.sh)";
  if (spawnSync("ping", ["-V"]).error) return "needs ping (iputils-ping)";
  return null;
}
const skip = skipReason();

function topology() {
  const node = (name: string, pool: string, ip: string, podCIDR: string, gw: string) => ({
    name,
    labels: { "apps.openyurt.io/nodepool": pool, "raven.openyurt.io/gateway": gw },
    internalIP: ip,
    podCIDR,
  });
  const gateway = (name: string, nodes: string[], exposeType = "") => ({
    metadata: { name },
    spec: { exposeType, endpoints: nodes.flatMap((n) => [{ nodeName: n, type: "proxy" }, { nodeName: n, type: "tunnel", underNAT: exposeType === "" }]) },
  });
  return parseTopology({
    name: "tunnel",
    nodes: [
      node("c-gw-1", "cloud", "10.0.0.1", "10.244.0.0/24", "gw-c"),
      node("c-node-1", "cloud", "10.0.0.2", "10.244.1.0/24", "gw-c"),
      node("a-gw-1", "edge-a", "192.168.0.1", "10.244.16.0/24", "gw-a"),
      node("a-gw-2", "edge-a", "192.168.0.2", "10.244.17.0/24", "gw-a"),
      node("a-node-1", "edge-a", "192.168.0.3", "10.244.18.0/24", "gw-a"),
      node("b-gw-1", "edge-b", "192.168.0.1", "10.244.32.0/24", "gw-b"),
      node("b-gw-2", "edge-b", "192.168.0.2", "10.244.33.0/24", "gw-b"),
      node("b-node-1", "edge-b", "192.168.0.3", "10.244.34.0/24", "gw-b"),
    ],
    gateways: [gateway("gw-c", ["c-gw-1"], "PublicIP"), gateway("gw-a", ["a-gw-1", "a-gw-2"]), gateway("gw-b", ["b-gw-1", "b-gw-2"])],
  });
}

function run(argv: readonly string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${argv.join(" ")}: ${stderr || stdout || err.message}`)) : resolve(stdout),
    );
  });
}

// A TCP sink: counts bytes per connection, answers with the count when the client ends.
const SINK = `const net = require("net");
net.createServer((c) => { let n = 0; c.on("data", (d) => (n += d.length)); c.on("end", () => c.end(String(n))); })
  .listen(+process.argv[2], process.argv[1], () => console.log("ready"));
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;
// A client: sends N bytes, waits for the count; prints {bytes, ms}.
const SEND = `const net = require("net"); const [, ip, port, total] = process.argv; const chunk = Buffer.alloc(64 * 1024, 7);
const t0 = process.hrtime.bigint(); let sent = 0, reply = "";
const s = net.connect(+port, ip, () => { const pump = () => { while (sent < +total) { sent += chunk.length; if (!s.write(chunk)) return s.once("drain", pump); } s.end(); }; pump(); });
s.setTimeout(20000, () => { console.error("timeout"); process.exit(2); });
s.on("data", (d) => (reply += d)); s.on("error", (e) => { console.error(e.message); process.exit(1); });
s.on("end", () => { console.log(JSON.stringify({ bytes: +reply, ms: Number(process.hrtime.bigint() - t0) / 1e6 })); process.exit(0); });`;
// A pod's metrics endpoint (what Prometheus would scrape).
const METRICS = `require("http").createServer((q, r) => {
  if (q.url !== "/metrics") { r.statusCode = 404; return r.end(); }
  r.setHeader("content-type", "text/plain; version=0.0.4");
  r.end('# TYPE pod_requests_total counter\\npod_requests_total{pod="' + process.argv[2] + '"} 42\\n');
}).listen(9100, process.argv[1], () => console.log("ready"));
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;

const TCP_PORT = 5201;
const MIB = 1024 * 1024;

let t: TestFleet;
let nc: NatsConnection;
const reports = new Map<string, GatewayTunnel>();
const helpers: ChildProcess[] = [];

const host = (node: string) => t.fleet.hostOf(node)!;
const inPod = (node: string, ...argv: string[]) => run(nsExec(host(node).podNs!, argv));

function startInPod(node: string, script: string, ...args: string[]): Promise<void> {
  const [cmd, ...rest] = nsExec(host(node).podNs!, [process.execPath, "-e", script, ...args]);
  const child = spawn(cmd!, rest, { stdio: ["pipe", "pipe", "pipe"] });
  helpers.push(child);
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => String(d).includes("ready") && resolve());
    child.once("exit", (code) => reject(new Error(`helper in ${node}'s pod exited with ${code}: ${err}`)));
  });
}

async function send(from: string, to: string, bytes: number): Promise<{ bytes: number; ms: number }> {
  return JSON.parse(await inPod(from, process.execPath, "-e", SEND, host(to).podIP!, String(TCP_PORT), String(bytes))) as { bytes: number; ms: number };
}

/** The active tunnel endpoint of a domain per the coordinator, with its term. */
async function activeTunnel(domain: string): Promise<{ node: string; term: number }> {
  const st = await fleetStatus(t.fleet);
  const d = st?.domains.find((x) => x.domain === domain);
  const node = d?.active.find((a) => a.type === "tunnel")?.nodeName;
  if (!d || !node) throw new Error(`no active tunnel endpoint in ${domain}`);
  return { node, term: d.term };
}

/** Every active gateway reports a tunnel to each other domain, up, fenced to that domain's current active. */
async function meshUp(): Promise<boolean> {
  const actives = await Promise.all(["cloud", "edge-a", "edge-b"].map(async (d) => ({ domain: d, ...(await activeTunnel(d)) })));
  for (const a of actives) {
    const r = reports.get(a.node);
    if (!r?.active) return false;
    for (const other of actives.filter((x) => x !== a)) {
      const tun = r.tunnels.find((x) => x.peer === other.domain);
      if (tun?.state !== "up" || tun.peerNode !== other.node || tun.peerTerm !== other.term) return false;
    }
  }
  return true;
}

const DRIVERS = [
  { driver: "strongswan" as const, skip },
  { driver: "wireguard" as const, skip: skip ?? (spawnSync("wireguard-go", ["--version"]).error || spawnSync("wg", ["--version"]).error ? "needs wireguard-go and wg (scripts/setup.sh)" : null) },
];

describe.each(DRIVERS)("tunnel mode in a fleet with $driver", ({ driver, skip }) => {
  if (skip) {
    it.skip(`(skipped: ${skip})`, () => undefined);
    return;
  }
  beforeAll(async () => {
    reports.clear();
    t = await startTestFleet(topology(), { tunnel: true, tunnelDriver: driver });
    nc = await t.fleet.connect();
    const sub = nc.subscribe(subjects.allGatewayTunnel());
    void (async () => {
      for await (const m of sub) {
        const msg = decode(m.data);
        if (msg.type === "gw.tunnel") reports.set(msg.body.node, msg.body);
      }
    })();
    const t0 = performance.now();
    await eventually("the tunnel mesh between the active gateways", 60_000, meshUp, 100);
    // The nodes' routes follow the same records on their own schedule: the data path is ready when a plain
    // node routes the other domains' pod CIDRs to its gateway.
    await eventually("a-node-1's routes to the other domains", 20_000, async () => {
      const routes = await run(nsExec(host("a-node-1").ns, ["ip", "route", "show", "dev", "raven0"]));
      return routes.includes("10.244.34.0/24") && routes.includes("10.244.1.0/24");
    });
    console.log(`[tunnel-fleet ${driver}] mesh of 3 domains up ${(performance.now() - t0).toFixed(0)} ms after the fleet was ready`);
  }, 150_000);

  afterAll(async () => {
    for (const h of helpers) if (h.exitCode === null) h.kill("SIGKILL");
    await nc?.close().catch(() => undefined);
    await t?.stop();
  }, 60_000);

  it("gives every node a host and a pod namespace, with edge IPs that collide across domains", async () => {
    expect(host("a-node-1").lanIP).toBe(host("b-node-1").lanIP);
    expect(await inPod("a-node-1", "ip", "-o", "-4", "addr", "show", "dev", "eth0")).toContain("10.244.18.10/24");
    const route = await run(nsExec(host("a-node-1").ns, ["ip", "route", "show", "10.244.34.0/24"]));
    const gw = (await activeTunnel("edge-a")).node;
    expect(route).toContain(`via 240.168.0.${gw === "a-gw-1" ? 1 : 2} dev raven0`);
  });

  it("reports every tunnel on the mesh with its peer gateway, term, latency and bytes", async () => {
    const cloud = (await activeTunnel("cloud")).node;
    expect(reports.get(cloud)!.driver).toBe(driver);
    if (driver === "wireguard") {
      // No probe through WireGuard (the gateways hold no pod address to ping from): bytes only.
      const tun = await eventually("bytes counted on the tunnel", 10_000, () => {
        const x = reports.get(cloud)?.tunnels.find((y) => y.peer === "edge-b");
        return x?.bytesOut ? x : undefined;
      });
      expect(tun).toMatchObject({ state: "up", error: null, latencyUs: null });
      return;
    }
    const withLatency = await eventually("a latency through the tunnel", 10_000, () => {
      const tun = reports.get(cloud)?.tunnels.find((x) => x.peer === "edge-b");
      return tun?.latencyUs !== null && tun?.latencyUs !== undefined ? tun : undefined;
    });
    expect(withLatency).toMatchObject({ state: "up", error: null });
    console.log(`[tunnel-fleet ${driver}] cloud -> edge-b latency through IPsec ${(withLatency.latencyUs! / 1000).toFixed(2)} ms`);
  });

  it("carries ICMP from a pod on edge-a's plain node to pods on edge-b's and the cloud's plain nodes", async () => {
    for (const to of ["b-node-1", "c-node-1"]) {
      const out = await inPod("a-node-1", "ping", "-c", "3", "-i", "0.2", "-W", "2", host(to).podIP!);
      expect(out).toMatch(/3 received/);
      console.log(`[tunnel-fleet ${driver}] ping a-node-1 pod -> ${to} pod: ${/rtt .*/.exec(out)?.[0]}`);
    }
  });

  it("carries TCP from a pod on edge-a to a pod on edge-b and to one in the cloud", async () => {
    await startInPod("b-node-1", SINK, host("b-node-1").podIP!, String(TCP_PORT));
    await startInPod("c-node-1", SINK, host("c-node-1").podIP!, String(TCP_PORT));
    for (const to of ["b-node-1", "c-node-1"]) {
      const r = await send("a-node-1", to, 16 * MIB);
      expect(r.bytes).toBe(16 * MIB);
      console.log(`[tunnel-fleet ${driver}] TCP a-node-1 pod -> ${to} pod: 16 MiB in ${r.ms.toFixed(0)} ms = ${(16 / (r.ms / 1000)).toFixed(1)} MiB/s`);
    }
  }, 60_000);

  it("lets the cloud scrape an HTTP metrics endpoint in an edge pod through the tunnel", async () => {
    await startInPod("b-node-1", METRICS, host("b-node-1").podIP!, "b-node-1-pod");
    const body = await inPod("c-node-1", "curl", "-sS", "--max-time", "5", `http://${host("b-node-1").podIP}:9100/metrics`);
    expect(body).toContain('pod_requests_total{pod="b-node-1-pod"} 42');
  });

  it("shows the tunnels in `raven status`", async () => {
    const out = await run([process.execPath, "--import", "tsx", join(REPO_ROOT, "services/cli/main.ts"), "status", "--nats", t.fleet.hubUrl], 30_000);
    const cloud = (await activeTunnel("cloud")).node;
    const row = out.split("\n").find((l) => l.startsWith("cloud") && l.includes(cloud) && l.includes("edge-a") && l.includes(driver));
    expect(row, out).toMatch(driver === "strongswan" ? /\bup\b.*ms/ : /\bup\b/);
  });

  it("resumes traffic through the new gateway after SIGKILL of edge-a's active gateway actor, with no manual action", async () => {
    const before = await activeTunnel("edge-a");
    const target = host("b-node-1").podIP!;
    expect(await inPod("a-node-1", "ping", "-c", "1", "-W", "2", target)).toMatch(/1 received/);
    const t0 = performance.now();
    const pid = t.fleet.kill(`gateway-${before.node}`, "SIGKILL")!;
    // A packet sent before the process (and with it its charon) is gone still crosses the old path: count
    // only pings sent after that, through a gateway the coordinator has named since.
    await eventually("the killed gateway actor to exit", 5_000, () => !isPidAlive(pid), 1);
    await eventually("pod a -> pod b through the new gateway", 20_000, async () => {
      try {
        if (!(await inPod("a-node-1", "ping", "-c", "1", "-W", "0.2", target)).includes("1 received")) return false;
      } catch {
        return false;
      }
      return (await activeTunnel("edge-a")).node !== before.node;
    }, 0);
    const ms = performance.now() - t0;
    const after = await activeTunnel("edge-a");
    console.log(`[tunnel-fleet ${driver}] SIGKILL ${before.node} -> first ping through ${after.node}: ${ms.toFixed(0)} ms`);
    expect(after.node).not.toBe(before.node);
    expect(after.term).toBeGreaterThan(before.term);
    const route = await run(nsExec(host("a-node-1").ns, ["ip", "route", "show", "10.244.34.0/24"]));
    expect(route).toContain(`via 240.168.0.${after.node === "a-gw-1" ? 1 : 2} dev raven0`);
    const r = await send("a-node-1", "b-node-1", 4 * MIB);
    expect(r.bytes).toBe(4 * MIB);
    await eventually("the tunnel mesh with edge-a's new gateway", 20_000, meshUp);
  }, 60_000);
});
