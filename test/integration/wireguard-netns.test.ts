// Tunnel mode's data path over WireGuard for real (root, iproute2, wireguard-go, wg): two gateway namespaces
// joined by a veth underlay, a node behind gateway A on a LAN, a pod behind that node and a pod on gateway B.
// WireGuardDriver runs one wireguard-go per gateway, both on the same device name (their UAPI sockets live
// in private /run mounts), with keys derived from the shared PSK and the node names; IpRouteDriver builds the
// VXLAN node -> gateway and routes the remote pod CIDRs into the WireGuard device. ICMP and TCP from pod A
// reach pod B; the MTU arithmetic holds; apply again is a no-op; removing the peer removes it (and adding it
// back re-establishes the tunnel); a wireguard-go that died is restarted by the next apply; a killed owner takes its wireguard-go along; cleanup leaves no
// wireguard-go, namespace or link of the run's prefix.
//
// Everything lives in namespaces named `<prefix>-*` (no root links at all); the prefix has a marker in
// /run/raven-netns so that reapStaleNetns removes it if this run is killed; wireguard-go dies with its owner
// (pdeathsig).
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MARKER_DIR, destroyNetns, isPidAlive, newNetnsPrefix, nsExec, reapStaleNetns } from "../../services/fleet/netns";
import { computeRoutes, ensurePskFile, IpRouteDriver, WIREGUARD_OVERHEAD_BYTES, type VpnPeer, type VpnStatus } from "../../services/tunnel";
import { DEFAULT_WG, DEFAULT_WIREGUARD_GO, WireGuardDriver } from "../../services/tunnel/wireguard";

function skipReason(): string | null {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "needs root (ip netns add, wireguard-go's TUN device)";
  if (spawnSync("ip", ["-V"]).error) return "needs iproute2 (`ip` not found)";
  if (spawnSync(DEFAULT_WIREGUARD_GO, ["--version"]).error) return "needs wireguard-go (apt-get install --no-install-recommends wireguard-go, or scripts/setup.sh)";
  if (spawnSync(DEFAULT_WG, ["--version"]).error) return "needs wg (apt-get install --no-install-recommends wireguard-tools, or scripts/setup.sh)";
  if (!existsSync("/dev/net/tun")) return "needs /dev/net/tun (wireguard-go's TUN device)";
  if (spawnSync("ping", ["-V"]).error) return "needs ping (iputils-ping)";
  return null;
}
const skip = skipReason();
const DRIVER_MODULE = fileURLToPath(new URL("../../services/tunnel/wireguard.ts", import.meta.url));

function run(argv: readonly string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs }, (err, stdout, stderr) =>
      err ? reject(new Error(`${argv.join(" ")}: ${stderr || stdout || err.message}`)) : resolve(stdout),
    );
  });
}
const inNs = (ns: string, ...argv: string[]) => run(nsExec(ns, argv));
/** `wg` next to a driver's wireguard-go (its mount namespace holds the UAPI socket). */
const wgOf = (drv: WireGuardDriver, ...args: string[]) => run(["nsenter", "-t", String(drv.pid), "-m", "-n", DEFAULT_WG, ...args]);

const UNDERLAY = { a: "198.18.201.1", b: "198.18.201.2" };
const LAN_A = { gw: "192.168.11.1", node: "192.168.11.2" };
const LAN_B = { gw: "192.168.21.1" };
const POD = { a: "10.244.1.10", b: "10.244.2.10" };
const CIDR = { gwA: "10.244.0.0/24", nodeA: "10.244.1.0/24", gwB: "10.244.2.0/24" };
const TCP_PORT = 5201;
const UNDERLAY_MTU = 1500;
const MIB = 1024 * 1024;

// A TCP sink in pod B: counts bytes per connection and answers with the count when the client ends.
const SINK = `const net = require("net");
net.createServer((c) => { let n = 0; c.on("data", (d) => (n += d.length)); c.on("end", () => c.end(String(n))); })
  .listen(+process.argv[2], process.argv[1], () => console.log("ready"));
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;
// A client in pod A: sends N bytes, waits for the sink's count; prints {bytes, ms}.
const SEND = `const net = require("net"); const [, ip, port, total] = process.argv; const chunk = Buffer.alloc(64 * 1024, 7);
const t0 = process.hrtime.bigint(); let sent = 0, reply = "";
const s = net.connect(+port, ip, () => { const pump = () => { while (sent < +total) { sent += chunk.length; if (!s.write(chunk)) return s.once("drain", pump); } s.end(); }; pump(); });
s.setTimeout(20000, () => { console.error("timeout"); process.exit(2); });
s.on("data", (d) => (reply += d)); s.on("error", (e) => { console.error(e.message); process.exit(1); });
s.on("end", () => { console.log(JSON.stringify({ bytes: +reply, ms: Number(process.hrtime.bigint() - t0) / 1e6 })); process.exit(0); });`;

let prefix = "";
let workDir = "";
const ns = { gwA: "", gwB: "", nodeA: "", podA: "", podB: "" };
let drvA: WireGuardDriver;
let drvB: WireGuardDriver;
const routeDrivers: IpRouteDriver[] = [];
const helpers: ChildProcess[] = [];
const wgPids: number[] = [];

const peerOfA: VpnPeer = { name: "gw-b", remoteNode: "gw-b", localAddr: UNDERLAY.a, remoteAddr: UNDERLAY.b, localSubnets: [CIDR.gwA, CIDR.nodeA], remoteSubnets: [CIDR.gwB] };
const peerOfB: VpnPeer = { name: "gw-a", remoteNode: "gw-a", localAddr: UNDERLAY.b, remoteAddr: UNDERLAY.a, localSubnets: [CIDR.gwB], remoteSubnets: [CIDR.gwA, CIDR.nodeA] };
const routesNodeA = () =>
  computeRoutes({
    role: "node", localIP: LAN_A.node, gatewayIP: LAN_A.gw, localNodes: [{ lanIP: LAN_A.gw, podCidrs: [CIDR.gwA] }, { lanIP: LAN_A.node, podCidrs: [CIDR.nodeA] }],
    remotePodCidrs: [CIDR.gwB], underlayMtu: UNDERLAY_MTU, vpnOverheadBytes: drvA.overheadBytes,
  });
const routesGwA = () =>
  computeRoutes({
    role: "gateway", localIP: LAN_A.gw, gatewayIP: LAN_A.gw, localNodes: [{ lanIP: LAN_A.gw, podCidrs: [CIDR.gwA] }, { lanIP: LAN_A.node, podCidrs: [CIDR.nodeA] }],
    remotePodCidrs: [CIDR.gwB], underlayMtu: UNDERLAY_MTU, vpnOverheadBytes: drvA.overheadBytes, tunnelDev: drvA.tunnelDev,
  });
const routesGwB = () =>
  computeRoutes({
    role: "gateway", localIP: LAN_B.gw, gatewayIP: LAN_B.gw, localNodes: [{ lanIP: LAN_B.gw, podCidrs: [CIDR.gwB] }],
    remotePodCidrs: [CIDR.gwA, CIDR.nodeA], underlayMtu: UNDERLAY_MTU, vpnOverheadBytes: drvB.overheadBytes, tunnelDev: drvB.tunnelDev,
  });

async function buildTopology(): Promise<void> {
  const cmds: string[][] = [];
  const ipn = (n: string, ...a: string[]) => cmds.push(["ip", "-n", n, ...a]);
  for (const n of Object.values(ns)) {
    cmds.push(["ip", "netns", "add", n]);
    ipn(n, "link", "set", "lo", "up");
  }
  // underlay: gwA wan0 <-> gwB wan0
  cmds.push(["ip", "-n", ns.gwA, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", ns.gwB]);
  ipn(ns.gwA, "addr", "add", `${UNDERLAY.a}/24`, "dev", "wan0");
  ipn(ns.gwB, "addr", "add", `${UNDERLAY.b}/24`, "dev", "wan0");
  // domain A's LAN: gwA lan0 <-> nodeA lan0
  cmds.push(["ip", "-n", ns.gwA, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", ns.nodeA]);
  ipn(ns.gwA, "addr", "add", `${LAN_A.gw}/24`, "dev", "lan0");
  ipn(ns.nodeA, "addr", "add", `${LAN_A.node}/24`, "dev", "lan0");
  // domain B's LAN: only its gateway (an ifb: this kernel has no dummy links)
  ipn(ns.gwB, "link", "add", "lan0", "type", "ifb");
  ipn(ns.gwB, "addr", "add", `${LAN_B.gw}/24`, "dev", "lan0");
  // pods, wired like a CNI would: a veth into the pod, the host end holding the pod CIDR's first address
  for (const [host, pod, gwIp, podIp] of [[ns.nodeA, ns.podA, "10.244.1.1", POD.a], [ns.gwB, ns.podB, "10.244.2.1", POD.b]] as const) {
    cmds.push(["ip", "-n", host, "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", pod]);
    ipn(host, "addr", "add", `${gwIp}/24`, "dev", "vpod");
    ipn(pod, "addr", "add", `${podIp}/24`, "dev", "eth0");
    ipn(host, "link", "set", "vpod", "up");
    ipn(pod, "link", "set", "eth0", "up");
    ipn(pod, "route", "add", "default", "via", gwIp);
  }
  for (const [n, dev] of [[ns.gwA, "wan0"], [ns.gwB, "wan0"], [ns.gwA, "lan0"], [ns.nodeA, "lan0"], [ns.gwB, "lan0"]] as const) {
    ipn(n, "link", "set", dev, "mtu", String(UNDERLAY_MTU), "up");
  }
  for (const c of cmds) await run(c);
}

async function waitUp(drv: WireGuardDriver, timeoutMs = 15_000): Promise<VpnStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await drv.status();
    if (st.peers.length > 0 && st.peers.every((p) => p.state === "up")) return st;
    if (Date.now() > deadline) throw new Error(`${drv.name} not up after ${timeoutMs} ms: ${JSON.stringify(st)}\nwireguard-go log: ${drv.logTail(20)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function fragCreates(n: string): Promise<number> {
  const lines = (await inNs(n, "cat", "/proc/net/snmp")).split("\n").filter((l) => l.startsWith("Ip:"));
  const head = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[head.indexOf("FragCreates")]);
}

function startSink(): Promise<void> {
  const [cmd, ...args] = nsExec(ns.podB, [process.execPath, "-e", SINK, POD.b, String(TCP_PORT)]);
  const child = spawn(cmd!, args, { stdio: ["pipe", "pipe", "pipe"] });
  helpers.push(child);
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => String(d).includes("ready") && resolve());
    child.once("exit", (code) => reject(new Error(`sink exited with ${code}: ${err}`)));
  });
}

async function send(bytes: number): Promise<{ bytes: number; ms: number }> {
  return JSON.parse(await inNs(ns.podA, process.execPath, "-e", SEND, POD.b, String(TCP_PORT), String(bytes))) as { bytes: number; ms: number };
}

async function leftovers(): Promise<string[]> {
  const nss = JSON.parse((await run(["ip", "-j", "netns", "list"])).trim() || "[]") as { name: string }[];
  const links = JSON.parse(await run(["ip", "-j", "link", "show"])) as { ifname: string }[];
  return [...nss.map((n) => n.name), ...links.map((l) => l.ifname)].filter((n) => n.startsWith(prefix));
}

describe.skipIf(skip !== null)(`tunnel mode over WireGuard in network namespaces${skip ? ` (skipped: ${skip})` : ""}`, () => {
  beforeAll(async () => {
    await reapStaleNetns(); // namespaces of killed earlier runs (their wireguard-go died with them)
    prefix = newNetnsPrefix();
    mkdirSync(DEFAULT_MARKER_DIR, { recursive: true });
    writeFileSync(join(DEFAULT_MARKER_DIR, `${prefix}.pid`), `${process.pid}\n`);
    for (const k of Object.keys(ns) as (keyof typeof ns)[]) ns[k] = `${prefix}-${k.toLowerCase()}`;
    workDir = mkdtempSync(join(tmpdir(), "raven-wireguard-"));
    const pskFile = ensurePskFile(join(workDir, "secrets", "tunnel.psk"));
    // Same (default) device name on both gateways: the private /run keeps their UAPI sockets apart.
    drvA = new WireGuardDriver({ name: "gw-a", node: "gw-a", netns: ns.gwA, stateDir: join(workDir, "gw-a"), pskFile, underlayMtu: UNDERLAY_MTU });
    drvB = new WireGuardDriver({ name: "gw-b", node: "gw-b", netns: ns.gwB, stateDir: join(workDir, "gw-b"), pskFile, underlayMtu: UNDERLAY_MTU });
    await buildTopology();
  }, 60_000);

  afterAll(async () => {
    for (const h of helpers) if (h.exitCode === null) h.kill("SIGKILL");
    for (const d of [drvA, drvB]) await d?.cleanup().catch((err) => console.error("wireguard cleanup:", err));
    for (const r of routeDrivers) await r.cleanup().catch(() => undefined); // namespaces go next anyway
    if (prefix) await destroyNetns(prefix).catch((err) => console.error(`netns cleanup of ${prefix}:`, err));
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }, 60_000);

  it("brings the WireGuard tunnel up between the gateways, one wireguard-go each on the same device name", async () => {
    const t0 = performance.now();
    await drvB.apply({ peers: [peerOfB] });
    await drvA.apply({ peers: [peerOfA] });
    const [stA, stB] = [await waitUp(drvA), await waitUp(drvB)];
    console.log(`[wireguard] wireguard-go x2 started, configured and handshaken in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(stA.peers[0]).toMatchObject({ name: "gw-b", state: "up", lastError: null });
    expect(stB.peers[0]).toMatchObject({ name: "gw-a", state: "up", lastError: null });
    expect(stA.peers[0]!.saId).toContain(`@${UNDERLAY.b}:51820`);
    wgPids.push(drvA.pid!, drvB.pid!);
    expect(wgPids.every((p) => isPidAlive(p))).toBe(true);
    expect([drvA.starts, drvB.starts]).toEqual([1, 1]);
    // The device: the default name in both namespaces, MTU = underlay - 80, up.
    for (const n of [ns.gwA, ns.gwB]) expect(await inNs(n, "ip", "-o", "link", "show", "dev", "raven-wg0")).toMatch(new RegExp(`<[^>]*\\bUP\\b[^>]*> mtu ${UNDERLAY_MTU - WIREGUARD_OVERHEAD_BYTES} `));
    // Keys from the PSK and node names: A's device runs the key B derived for "gw-a", and vice versa.
    expect((await wgOf(drvA, "show", "raven-wg0", "public-key")).trim()).toBe((await wgOf(drvB, "show", "raven-wg0", "peers")).trim());
    expect((await wgOf(drvB, "show", "raven-wg0", "public-key")).trim()).toBe((await wgOf(drvA, "show", "raven-wg0", "peers")).trim());
  });

  it("builds VXLAN node -> gateway and the routes into the WireGuard device, then ICMP from the pod behind node A reaches the pod on gateway B", async () => {
    for (const [n, desired] of [[ns.gwB, routesGwB()], [ns.gwA, routesGwA()], [ns.nodeA, routesNodeA()]] as const) {
      const drv = new IpRouteDriver({ netns: n });
      routeDrivers.push(drv);
      expect((await drv.apply(desired)).length).toBeGreaterThan(0);
    }
    expect(await inNs(ns.gwA, "ip", "route", "show", CIDR.gwB)).toMatch(/dev raven-wg0 .*mtu 1420/);
    expect(await inNs(ns.nodeA, "ip", "route", "show", CIDR.gwB)).toMatch(/via 240\.168\.11\.1 dev raven0 .*mtu 1420/);
    const out = await inNs(ns.podA, "ping", "-c", "3", "-i", "0.2", "-W", "2", POD.b);
    expect(out).toMatch(/3 received/);
    console.log(`[wireguard] ping pod A -> pod B: ${/rtt .*/.exec(out)?.[0]}`);
  });

  it("carries TCP from pod A to pod B and counts the bytes on the peer; measures throughput once", async () => {
    await startSink();
    const small = await send(1000);
    expect(small.bytes).toBe(64 * 1024); // the client sends whole 64 KiB chunks
    const before = (await drvA.status()).peers[0]!;
    const total = 64 * MIB;
    const r = await send(total);
    expect(r.bytes).toBe(total);
    const after = (await drvA.status()).peers[0]!;
    expect(after.bytesOut! - before.bytesOut!).toBeGreaterThanOrEqual(total);
    console.log(`[wireguard] TCP pod A -> node A -VXLAN-> gw A -WireGuard(wireguard-go)-> gw B -> pod B: ${total / MIB} MiB in ${r.ms.toFixed(0)} ms = ${(total / MIB / (r.ms / 1000)).toFixed(1)} MiB/s`);
  }, 60_000);

  it("holds the MTU arithmetic: a DF packet of the path MTU crosses unfragmented, one byte more is refused at the node", async () => {
    const pathMtu = routesNodeA().pathMtu;
    expect(pathMtu).toBe(UNDERLAY_MTU - WIREGUARD_OVERHEAD_BYTES);
    const frags = await fragCreates(ns.gwA);
    expect(await inNs(ns.podA, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", String(pathMtu - 28), POD.b)).toMatch(/1 received/);
    expect(await fragCreates(ns.gwA)).toBe(frags); // the outer UDP packet (pathMtu + 60 over IPv4) fit the underlay
    await expect(inNs(ns.podA, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", String(pathMtu - 27), POD.b)).rejects.toThrow();
  });

  it("apply again is a no-op: no command that changes anything, same wireguard-go, same saIds, no route change", async () => {
    const [idA, idB] = [(await drvA.status()).peers[0]!.saId, (await drvB.status()).peers[0]!.saId];
    const changes = [drvA.changes, drvB.changes];
    const [a, b] = [await drvA.apply({ peers: [peerOfA] }), await drvB.apply({ peers: [peerOfB] })];
    expect([drvA.changes, drvB.changes]).toEqual(changes);
    expect([drvA.starts, drvB.starts]).toEqual([1, 1]);
    expect([drvA.pid, drvB.pid]).toEqual(wgPids);
    expect([a.peers[0]!.saId, b.peers[0]!.saId]).toEqual([idA, idB]);
    expect(await routeDrivers[0]!.apply(routesGwB())).toEqual([]);
    expect(await routeDrivers[1]!.apply(routesGwA())).toEqual([]);
    expect(await routeDrivers[2]!.apply(routesNodeA())).toEqual([]);
  });

  it("removes a peer no longer desired from the device; adding it back re-establishes the tunnel under a new saId", async () => {
    const id = (await drvA.status()).peers[0]!.saId;
    await drvA.apply({ peers: [] });
    expect((await drvA.status()).peers).toEqual([]);
    expect((await wgOf(drvA, "show", "raven-wg0", "peers")).trim()).toBe("");
    await expect(inNs(ns.podA, "ping", "-c", "1", "-W", "1", POD.b)).rejects.toThrow();
    await drvA.apply({ peers: [peerOfA] });
    const st = await waitUp(drvA);
    expect(st.peers[0]!.saId).not.toBe(id);
    expect(await inNs(ns.podA, "ping", "-c", "1", "-W", "2", POD.b)).toMatch(/1 received/);
  });

  it("reports a wireguard-go that died as down, and the next apply starts it again with the peers", async () => {
    const old = drvB.pid!;
    process.kill(old, "SIGKILL"); // ours: started by drvB in this test
    expect((await drvB.status()).peers[0]!.state).toBe("down"); // before or after the driver saw the exit
    const deadline = Date.now() + 10_000;
    while (drvB.pid !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    const st = await drvB.status();
    expect(st.peers[0]).toMatchObject({ name: "gw-a", state: "down", saId: null, lastError: "wireguard-go exited (SIGKILL)" });
    await drvB.apply({ peers: [peerOfB] });
    expect(drvB.starts).toBe(2);
    wgPids.push(drvB.pid!);
    await waitUp(drvB);
    await waitUp(drvA);
    // The new wireguard-go has a new TUN device: the kernel dropped the routes into the old one with it, and
    // the route driver's next (level-triggered) apply puts them back. A reconciler applies both, VPN first.
    expect(await routeDrivers[0]!.apply(routesGwB())).toEqual([`route ${CIDR.gwA} dev raven-wg0 mtu 1420`, `route ${CIDR.nodeA} dev raven-wg0 mtu 1420`]);
    expect(await inNs(ns.podA, "ping", "-c", "1", "-W", "2", POD.b)).toMatch(/1 received/);
  });

  it("a killed owner takes its wireguard-go and device with it (parent-death signal)", async () => {
    // A separate owner process with its own driver, in node A's namespace (same device name once more).
    const script = join(workDir, "owner.mts");
    writeFileSync(script, `import { WireGuardDriver } from ${JSON.stringify(DRIVER_MODULE)};
const d = new WireGuardDriver({ node: "node-a", netns: ${JSON.stringify(ns.nodeA)}, stateDir: ${JSON.stringify(join(workDir, "owner"))}, pskFile: ${JSON.stringify(join(workDir, "secrets", "tunnel.psk"))} });
await d.apply({ peers: [] });
console.log(d.pid);
setInterval(() => undefined, 60_000);
`);
    const owner = spawn(process.execPath, ["--import", "tsx", script], { cwd: process.cwd(), stdio: ["ignore", "pipe", "pipe"] });
    helpers.push(owner);
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      let err = "";
      owner.stdout!.on("data", (d) => {
        out += d;
        if (/^\d+\n/.test(out)) resolve(Number(out.split("\n")[0]));
      });
      owner.stderr!.on("data", (d) => (err += d));
      owner.once("exit", (code) => reject(new Error(`owner exited with ${code}: ${err}`)));
    });
    wgPids.push(pid);
    expect(isPidAlive(pid)).toBe(true);
    expect(await inNs(ns.nodeA, "ip", "-o", "link", "show")).toContain("raven-wg0");
    owner.kill("SIGKILL");
    const deadline = Date.now() + 10_000;
    while (isPidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(isPidAlive(pid)).toBe(false);
    expect(await inNs(ns.nodeA, "ip", "-o", "link", "show")).not.toContain("raven-wg0");
  }, 30_000);

  it("cleanup leaves no wireguard-go, namespace or link of the run", async () => {
    await drvA.cleanup();
    await drvB.cleanup();
    await drvA.cleanup(); // idempotent
    for (const pid of wgPids) expect(isPidAlive(pid)).toBe(false);
    for (const n of [ns.gwA, ns.gwB]) expect(await inNs(n, "ip", "-o", "link", "show")).not.toContain("raven-wg0");
    for (const r of routeDrivers) await r.cleanup();
    expect(await inNs(ns.nodeA, "ip", "-o", "link", "show")).not.toContain("raven0");
    for (const h of helpers) h.kill("SIGKILL");
    await destroyNetns(prefix);
    expect(await leftovers()).toEqual([]);
  });
});
