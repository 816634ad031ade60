// Tunnel mode's data path over WireGuard for real (root, iproute2, wireguard-go, wg): two gateway namespaces
// joined by a veth underlay, a node behind gateway A on a LAN, a pod behind that node and a pod on gateway B.
// WireGuardDriver runs one wireguard-go per gateway, both on the same device name (their UAPI sockets live
// in private /run mounts), with keys derived from the shared PSK and the node names; IpRouteDriver builds the
// VXLAN node -> gateway and routes the remote pod CIDRs into the WireGuard device. ICMP and TCP from pod A
// reach pod B; the MTU arithmetic holds; apply again is a no-op; removing the peer removes it (and adding it
// back re-establishes the tunnel); a wireguard-go that died is restarted by the next apply; a killed owner takes its wireguard-go along; cleanup leaves no
// wireguard-go, namespace or link of the run's prefix.
//
// Everything lives in namespaces named `<prefix>-*` (no root links at all), built by
// test/helpers/driver-topology.ts (here on a 1500-byte underlay); the prefix has a marker in /run/raven-netns so
// that reapStaleNetns removes it if this run is killed; wireguard-go dies with its owner (pdeathsig).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { destroyNetns, isPidAlive } from "../../services/fleet/netns";
import { WIREGUARD_OVERHEAD_BYTES, type VpnPeer } from "../../lib/vpn";
import { DEFAULT_WIREGUARD_GO, WireGuardDriver } from "../../lib/vpn/wireguard";

/** `wg`, to look at the device from outside the driver (which speaks UAPI itself). */
const DEFAULT_WG = "/usr/bin/wg";
import { countSpawns } from "../helpers/spawns";
import { CIDR, DriverTopology, POD, waitUp } from "../helpers/driver-topology";
import { fragCreates, inNs, MIB, run, throughput } from "../helpers/netns-traffic";

function skipReason(): string | null {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "needs root (ip netns add, wireguard-go's TUN device)";
  if (spawnSync("ip", ["-V"]).error) return "needs iproute2 (`ip` not found)";
  if (spawnSync(DEFAULT_WIREGUARD_GO, ["--version"]).error)
    return "needs wireguard-go (apt-get install --no-install-recommends wireguard-go, or scripts/setup.sh)";
  if (spawnSync(DEFAULT_WG, ["--version"]).error)
    return "needs wg (apt-get install --no-install-recommends wireguard-tools, or scripts/setup.sh)";
  if (!existsSync("/dev/net/tun")) return "needs /dev/net/tun (wireguard-go's TUN device)";
  if (spawnSync("ping", ["-V"]).error) return "needs ping (iputils-ping)";
  return null;
}
const skip = skipReason();
const DRIVER_MODULE = fileURLToPath(new URL("../../lib/vpn/wireguard.ts", import.meta.url));

/** `wg` next to a driver's wireguard-go (its mount namespace holds the UAPI socket). */
const wgOf = (drv: WireGuardDriver, ...args: string[]) =>
  run(["nsenter", "-t", String(drv.pid), "-m", "-n", DEFAULT_WG, ...args]);

const UNDERLAY = { a: "198.18.201.1", b: "198.18.201.2" };
const UNDERLAY_MTU = 1500;

const topo = new DriverTopology<WireGuardDriver>({
  underlay: UNDERLAY,
  lanA: { gw: "192.168.11.1", node: "192.168.11.2" },
  lanB: { gw: "192.168.21.1" },
  underlayMtu: UNDERLAY_MTU,
  workDirPrefix: "raven-wireguard-",
});
const { ns, routeDrivers, helpers } = topo;
let drvA: WireGuardDriver;
let drvB: WireGuardDriver;
const wgPids: number[] = [];

const peerOfA: VpnPeer = {
  name: "gw-b",
  remoteNode: "gw-b",
  localAddr: UNDERLAY.a,
  remoteAddr: UNDERLAY.b,
  localSubnets: [CIDR.gwA, CIDR.nodeA],
  remoteSubnets: [CIDR.gwB],
};
const peerOfB: VpnPeer = {
  name: "gw-a",
  remoteNode: "gw-a",
  localAddr: UNDERLAY.b,
  remoteAddr: UNDERLAY.a,
  localSubnets: [CIDR.gwB],
  remoteSubnets: [CIDR.gwA, CIDR.nodeA],
};

describe.skipIf(skip !== null)(
  `tunnel mode over WireGuard in network namespaces${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    beforeAll(async () => {
      // Same (default) device name on both gateways, node name = gateway name: the private /run keeps their UAPI sockets apart.
      [drvA, drvB] = await topo.create((side) => new WireGuardDriver({ ...side, node: side.name }));
    }, 60_000);

    afterAll(() => topo.destroy(), 60_000);

    it("brings the WireGuard tunnel up between the gateways, one wireguard-go each on the same device name", async () => {
      const t0 = performance.now();
      await drvB.apply({ peers: [peerOfB] });
      await drvA.apply({ peers: [peerOfA] });
      const [stA, stB] = [await waitUp(drvA), await waitUp(drvB)];
      console.log(
        `[wireguard] wireguard-go x2 started, configured and handshaken in ${(performance.now() - t0).toFixed(0)} ms`,
      );
      expect(stA.peers[0]).toMatchObject({ name: "gw-b", state: "up", lastError: null });
      expect(stB.peers[0]).toMatchObject({ name: "gw-a", state: "up", lastError: null });
      expect(stA.peers[0]!.saId).toContain(`@${UNDERLAY.b}:51820`);
      wgPids.push(drvA.pid!, drvB.pid!);
      expect(wgPids.every((p) => isPidAlive(p))).toBe(true);
      expect([drvA.starts, drvB.starts]).toEqual([1, 1]);
      // The device: the default name in both namespaces, MTU = underlay - 80, up.
      for (const n of [ns.gwA, ns.gwB])
        expect(await inNs(n, "ip", "-o", "link", "show", "dev", "raven-wg0")).toMatch(
          new RegExp(`<[^>]*\\bUP\\b[^>]*> mtu ${UNDERLAY_MTU - WIREGUARD_OVERHEAD_BYTES} `),
        );
      // Keys from the PSK and node names: A's device runs the key B derived for "gw-a", and vice versa.
      expect((await wgOf(drvA, "show", "raven-wg0", "public-key")).trim()).toBe(
        (await wgOf(drvB, "show", "raven-wg0", "peers")).trim(),
      );
      expect((await wgOf(drvB, "show", "raven-wg0", "public-key")).trim()).toBe(
        (await wgOf(drvA, "show", "raven-wg0", "peers")).trim(),
      );
    });

    it("builds VXLAN node -> gateway and the routes into the WireGuard device, then ICMP from the pod behind node A reaches the pod on gateway B", async () => {
      for (const changes of await topo.applyRoutes()) expect(changes.length).toBeGreaterThan(0);
      expect(await inNs(ns.gwA, "ip", "route", "show", CIDR.gwB)).toMatch(/dev raven-wg0 .*mtu 1420/);
      expect(await inNs(ns.nodeA, "ip", "route", "show", CIDR.gwB)).toMatch(
        /via 240\.168\.11\.1 dev raven0 .*mtu 1420/,
      );
      const out = await inNs(ns.podA, "ping", "-c", "3", "-i", "0.2", "-W", "2", POD.b);
      expect(out).toMatch(/3 received/);
      console.log(`[wireguard] ping pod A -> pod B: ${/rtt .*/.exec(out)?.[0]}`);
    });

    it("carries TCP from pod A to pod B and counts the bytes on the peer; measures throughput once", async () => {
      const total = 64 * MIB;
      const r = await topo.carryTcp(total);
      expect(r.smallBytes).toBe(64 * 1024); // the client sends whole 64 KiB chunks
      expect(r.bytes).toBe(total);
      expect(r.bytesOut).toBeGreaterThanOrEqual(total);
      console.log(
        `[wireguard] TCP pod A -> node A -VXLAN-> gw A -WireGuard(wireguard-go)-> gw B -> pod B: ${throughput(total, r.ms)}`,
      );
    }, 60_000);

    it("holds the MTU arithmetic: a DF packet of the path MTU crosses unfragmented, one byte more is refused at the node", async () => {
      const pathMtu = topo.routesNodeA().pathMtu;
      expect(pathMtu).toBe(UNDERLAY_MTU - WIREGUARD_OVERHEAD_BYTES);
      const frags = await fragCreates(ns.gwA);
      expect(await inNs(ns.podA, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", String(pathMtu - 28), POD.b)).toMatch(
        /1 received/,
      );
      expect(await fragCreates(ns.gwA)).toBe(frags); // the outer UDP packet (pathMtu + 60 over IPv4) fit the underlay
      await expect(
        inNs(ns.podA, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", String(pathMtu - 27), POD.b),
      ).rejects.toThrow();
    });

    it("apply again is a no-op: nothing changed, same wireguard-go, same saIds, no route change, and not one process started", async () => {
      const [idA, idB] = [(await drvA.status()).peers[0]!.saId, (await drvB.status()).peers[0]!.saId];
      const changes = [drvA.changes, drvB.changes];
      const spawned = await countSpawns(async () => {
        for (let i = 0; i < 10; i++) {
          const [a, b] = [await drvA.apply({ peers: [peerOfA] }), await drvB.apply({ peers: [peerOfB] })];
          expect([a.peers[0]!.saId, b.peers[0]!.saId]).toEqual([idA, idB]);
          expect([(await drvA.status()).peers[0]!.saId, (await drvB.status()).peers[0]!.saId]).toEqual([idA, idB]);
          expect(await routeDrivers[0]!.apply(topo.routesGwB())).toEqual([]);
          expect(await routeDrivers[1]!.apply(topo.routesGwA())).toEqual([]);
          expect(await routeDrivers[2]!.apply(topo.routesNodeA())).toEqual([]);
        }
      });
      expect([drvA.changes, drvB.changes]).toEqual(changes);
      expect([drvA.starts, drvB.starts]).toEqual([1, 1]);
      expect([drvA.pid, drvB.pid]).toEqual(wgPids);
      expect(spawned).toEqual({ count: 0, commands: [] });
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

    it("makes a session at the first exchange when both sides configure each other at the same instant, 10 times over", async () => {
      // Two active gateways react to the same record change together. If both initiated, their handshakes would
      // cross and each drop the other's answer, and their keepalives would repeat the collision every 5 s
      // (wireguard-conf.ts): only the initiator keeps a keepalive, the responder nudges once if nothing came.
      // WireGuard retries a failed handshake only after 5 s, so a round that took longer than 3 s needed one.
      const ping = async (n: string, from: string, to: string) => {
        try {
          return (await inNs(n, "ping", "-c", "1", "-W", "0.3", "-I", from, to)).includes("1 received");
        } catch {
          return false;
        }
      };
      const [anchorA, anchorB] = [CIDR.gwA.replace("/24", ""), CIDR.gwB.replace("/24", "")];
      const rounds: number[] = [];
      const nudgedBefore = drvA.nudged + drvB.nudged;
      for (let i = 0; i < 10; i++) {
        await Promise.all([drvA.apply({ peers: [] }), drvB.apply({ peers: [] })]);
        const t0 = performance.now();
        await Promise.all([drvA.apply({ peers: [peerOfA] }), drvB.apply({ peers: [peerOfB] })]);
        let [ab, ba] = [false, false];
        while (!(ab && ba) && performance.now() - t0 < 3_000) {
          [ab, ba] = await Promise.all([ab || ping(ns.gwA, anchorA, anchorB), ba || ping(ns.gwB, anchorB, anchorA)]);
        }
        rounds.push(ab && ba ? Math.round(performance.now() - t0) : Infinity);
      }
      console.log(
        `[wireguard] simultaneous configuration, both directions carrying after (ms): ${rounds.join(" ")}; responder nudges: ${drvA.nudged + drvB.nudged - nudgedBefore}`,
      );
      expect(rounds.filter((ms) => ms > 3_000)).toEqual([]);
      expect(drvA.nudged).toBe(0); // A has the lower address: it initiates, it never needs a nudge
    }, 60_000);

    it("reports a wireguard-go that died as down, and the next apply starts it again with the peers", async () => {
      const old = drvB.pid!;
      process.kill(old, "SIGKILL"); // ours: started by drvB in this test
      expect((await drvB.status()).peers[0]!.state).toBe("down"); // before or after the driver saw the exit
      const deadline = Date.now() + 10_000;
      while (drvB.pid !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      const st = await drvB.status();
      expect(st.peers[0]).toMatchObject({
        name: "gw-a",
        state: "down",
        saId: null,
        lastError: "wireguard-go exited (SIGKILL)",
      });
      const nudged = drvB.nudged;
      await drvB.apply({ peers: [peerOfB] });
      expect(drvB.starts).toBe(2);
      wgPids.push(drvB.pid!);
      await waitUp(drvB);
      await waitUp(drvA);
      // B responds to A (the higher address), and A still holds the old session, which B has lost with its
      // process: nothing makes A initiate soon, so B initiates once itself (the nudge).
      expect(drvB.nudged).toBe(nudged + 1);
      // The new wireguard-go has a new TUN device: the kernel dropped the routes into the old one with it, and
      // the route driver's next (level-triggered) apply puts them back. A reconciler applies both, VPN first.
      expect(await routeDrivers[0]!.apply(topo.routesGwB())).toEqual([
        `route ${CIDR.gwA} dev raven-wg0 mtu 1420`,
        `route ${CIDR.nodeA} dev raven-wg0 mtu 1420`,
      ]);
      expect(await inNs(ns.podA, "ping", "-c", "1", "-W", "2", POD.b)).toMatch(/1 received/);
    });

    it("a killed owner takes its wireguard-go and device with it (parent-death signal)", async () => {
      // A separate owner process with its own driver, in node A's namespace (same device name once more).
      const script = join(topo.workDir, "owner.mts");
      writeFileSync(
        script,
        `import { WireGuardDriver } from ${JSON.stringify(DRIVER_MODULE)};
const d = new WireGuardDriver({ node: "node-a", netns: ${JSON.stringify(ns.nodeA)}, stateDir: ${JSON.stringify(join(topo.workDir, "owner"))}, pskFile: ${JSON.stringify(topo.pskFile)} });
await d.apply({ peers: [] });
console.log(d.pid);
setInterval(() => undefined, 60_000);
`,
      );
      const owner = spawn(process.execPath, ["--import", "tsx", script], {
        cwd: process.cwd(),
        stdio: ["ignore", "pipe", "pipe"],
      });
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
      await destroyNetns(topo.prefix);
      expect(await topo.leftovers()).toEqual([]);
    });
  },
);
