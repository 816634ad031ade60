// Tunnel mode's kernel access without processes (lib/kernel/netlink.ts, kernel-net.ts, the raven_netns
// addon) against the real kernel, in a namespace of its own (root): reads and changes land in that namespace
// only, refusals carry errno and the kernel's own words, a sysctl changes the namespace's value and not the
// host's, the monitor hears changes and falls silent once stopped, and the pinger times a real echo.
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetlinkError } from "../../shared/errors";
import { destroyNetns, newNetnsPrefix } from "../../services/fleet/netns";
import { NetlinkNet, Pinger, linkNamed } from "../../lib/kernel";
import { eventually } from "../helpers/fleet";

function skipReason(): string | null {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "needs root (ip netns add)";
  if (spawnSync("ip", ["-V"]).error) return "needs iproute2 (`ip` not found)";
  return null;
}
const skip = skipReason();
const prefix = newNetnsPrefix();
const ns = `${prefix}.netlink`;
const ip = (...argv: string[]) => execFileSync("ip", ["-n", ns, ...argv], { encoding: "utf8" });

describe.skipIf(skip !== null)(`netlink in a network namespace${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let net: NetlinkNet;
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", ns]);
    ip("link", "set", "lo", "up");
    net = new NetlinkNet(ns);
  });
  afterAll(async () => {
    net?.close();
    await destroyNetns(prefix);
  });

  it("reads and changes that namespace only, as `ip` sees it", () => {
    expect(net.links().map((l) => l.name)).toEqual(["lo"]);
    net.addVxlan({ name: "raven0", mac: "0e:52:c0:a8:00:03", mtu: 1450, vni: 200, port: 4472, local: "127.0.0.1" });
    const dev = linkNamed(net, "raven0")!;
    expect(dev).toMatchObject({
      kind: "vxlan",
      mtu: 1450,
      mac: "0e:52:c0:a8:00:03",
      up: false,
      vxlan: { id: 200, port: 4472, local: "127.0.0.1", learning: false },
    });
    net.setLink(dev.index, "raven0", { up: true });
    net.replaceAddr(dev.index, "240.168.0.3", 32);
    net.replaceAddr(dev.index, "240.168.0.3", 32); // idempotent
    net.replaceNeighbour(dev.index, "240.168.0.1", "0e:52:c0:a8:00:01");
    net.replaceFdb(dev.index, "0e:52:c0:a8:00:01", "192.168.0.1");
    net.replaceRoute({ dst: "10.244.34.0/24", via: "240.168.0.1", oif: dev.index, mtu: 1400, protocol: 82 });
    expect(ip("route", "show", "proto", "82")).toBe("10.244.34.0/24 via 240.168.0.1 dev raven0 onlink mtu 1400 \n");
    expect(ip("neigh", "show", "dev", "raven0")).toContain("240.168.0.1 lladdr 0e:52:c0:a8:00:01 PERMANENT");
    expect(execFileSync("bridge", ["-n", ns, "fdb", "show", "dev", "raven0"], { encoding: "utf8" })).toContain(
      "0e:52:c0:a8:00:01 dst 192.168.0.1 self permanent",
    );
    expect(net.routes().filter((r) => r.protocol === 82)).toEqual([
      { dst: "10.244.34.0/24", table: 254, protocol: 82, oif: dev.index, gateway: "240.168.0.1", mtu: 1400 },
    ]);
    expect(
      net
        .addrs()
        .filter((a) => a.index === dev.index)
        .map((a) => a.address),
    ).toEqual(["240.168.0.3"]);
    expect(execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" })).not.toContain("raven0"); // not the host's
  });

  it("turns a refusal into a NetlinkError naming the request, errno and the kernel's words", () => {
    const dev = linkNamed(net, "raven0")!;
    expect(() => net.delRoute("10.99.0.0/24", 82)).toThrow(NetlinkError);
    expect(() => net.delRoute("10.99.0.0/24", 82)).toThrow(/^delete route 10\.99\.0\.0\/24: ESRCH/);
    expect(() =>
      net.addVxlan({ name: "raven0", mac: "0e:52:c0:a8:00:03", mtu: 1450, vni: 200, port: 4472, local: "127.0.0.1" }),
    ).toThrow(/^add vxlan raven0: EEXIST/);
    expect(() => net.replaceRoute({ dst: "10.98.0.0/24", via: null, oif: 9999, mtu: 1400, protocol: 82 })).toThrow(
      /^replace route 10\.98\.0\.0\/24 mtu 1400: ENODEV/,
    );
    expect(() => net.setLink(dev.index, "raven0", { mtu: 10 })).toThrow(/EINVAL \(.+\)/); // the kernel says why
  });

  it("switches forwarding in the namespace, never the host's", () => {
    const host = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
    net.setForwarding(true);
    expect(net.forwarding()).toBe(true);
    expect(
      execFileSync("ip", ["netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward"], { encoding: "utf8" }).trim(),
    ).toBe("1");
    net.setForwarding(false);
    expect(net.forwarding()).toBe(false);
    expect(readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim()).toBe(host);
  });

  it("hears route changes in the namespace until stopped", async () => {
    let heard = 0;
    const stop = net.watch(() => heard++);
    ip("route", "add", "10.97.0.0/24", "dev", "raven0");
    await eventually("the monitor to hear the new route", 2_000, () => heard > 0);
    stop();
    const after = heard;
    ip("route", "del", "10.97.0.0/24", "dev", "raven0");
    await new Promise((r) => setTimeout(r, 200));
    expect(heard).toBe(after);
  });

  it("times an ICMP echo from an address of the namespace, and gives up on one nobody answers", async () => {
    net.replaceAddr(1, "10.244.16.0", 32, "lo:raven");
    const pinger = new Pinger(ns);
    try {
      const rtt = await pinger.ping("10.244.16.0", "10.244.16.0", 1_000);
      expect(rtt).not.toBeNull();
      expect(rtt!).toBeGreaterThan(0);
      expect(await pinger.ping("10.244.16.0", "240.168.0.1", 200)).toBeNull(); // the neighbour exists; nobody is there
      expect(await pinger.ping("10.1.2.3", "10.244.16.0", 200)).toBeNull(); // not an address of the namespace
    } finally {
      pinger.close();
    }
  });
});
