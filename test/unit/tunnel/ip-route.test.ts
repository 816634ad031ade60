// IpRouteDriver against a runner that models one namespace's VXLAN device, neighbours, FDB and Raven's
// routes: what it reads, what it changes and in which order, and in how many processes (a failover waits on
// every one of them).
import { describe, expect, it } from "vitest";
import { computeRoutes, IpRouteDriver, RAVEN_ROUTE_PROTO, type CommandResult, type RouteDesired, type Runner } from "../../../services/tunnel";

type Call = { argv: string[]; input?: string };

/** A namespace as `ip`/`bridge` (with -j and -batch) show and change it; every call is recorded. */
class FakeNs {
  readonly calls: Call[] = [];
  device: { mtu: number; address: string; up: boolean; addrs: string[] } | null = null;
  neigh = new Map<string, string>(); // address -> MAC (all permanent)
  fdb = new Map<string, string>(); // MAC -> dst
  routes = new Map<string, { gateway?: string; dev: string; mtu: number }>();
  failLine: string | null = null;
  forwarding = "0";

  inFlight = 0;
  maxInFlight = 0;

  readonly runner: Runner = async (argv, options) => {
    this.calls.push({ argv: [...argv], ...(options?.input !== undefined ? { input: options.input } : {}) });
    // Each command takes a turn of the event loop, as a process would: calls made side by side overlap.
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    await new Promise((r) => setImmediate(r));
    this.inFlight--;
    const cmd = argv[1] === "netns" ? argv.slice(4) : argv; // ip netns exec NS cmd...
    const [tool, ...rest] = cmd;
    if (tool === "sysctl") {
      if (rest[0] === "-n") return ok(`${this.forwarding}\n`);
      this.forwarding = rest[1]!.split("=")[1]!;
      return ok("");
    }
    const args = rest[0] === "-n" ? rest.slice(2) : rest;
    if (args[0] === "-batch") {
      const lines = (options?.input ?? "").trim().split("\n");
      for (const [i, line] of lines.entries()) {
        if (line === this.failLine) return { code: 1, stdout: "", stderr: `RTNETLINK answers: No such file or directory\nCommand failed -:${i + 1}` };
        this.exec(tool!, line.split(" "));
      }
      return ok("");
    }
    return this.read(tool!, args);
  };

  private read(tool: string, args: string[]): CommandResult {
    const a = args.filter((x) => x !== "-j" && x !== "-d");
    const key = `${tool} ${a.slice(0, 2).join(" ")}`;
    switch (key) {
      case "ip link show":
        if (!this.device) return { code: 1, stdout: "", stderr: "Device does not exist" };
        return ok(JSON.stringify([{ ifname: "raven0", mtu: this.device.mtu, address: this.device.address, flags: this.device.up ? ["UP"] : [], linkinfo: { info_kind: "vxlan", info_data: { id: 200, local: "192.168.0.3", port: 4472, learning: false } } }]));
      case "ip addr show":
        if (!this.device) return { code: 1, stdout: "", stderr: "Device does not exist" };
        return ok(JSON.stringify([{ addr_info: this.device.addrs.map((x) => ({ family: "inet", local: x, prefixlen: 32 })) }]));
      case "ip neigh show":
        if (!this.device) return { code: 1, stdout: "", stderr: "Cannot find device" };
        return ok(JSON.stringify([...this.neigh].map(([dst, lladdr]) => ({ dst, lladdr, state: ["PERMANENT"] }))));
      case "bridge fdb show":
        if (!this.device) return { code: 1, stdout: "", stderr: "Cannot find device" };
        return ok(JSON.stringify([...this.fdb].map(([mac, dst]) => ({ mac, dst, state: "permanent" }))));
      case "ip route show":
        return ok(JSON.stringify([...this.routes].map(([dst, r]) => ({ dst, dev: r.dev, ...(r.gateway ? { gateway: r.gateway } : {}), metrics: [{ mtu: r.mtu }] }))));
      default:
        this.exec(tool, a);
        return ok("");
    }
  }

  private exec(tool: string, a: string[]): void {
    const at = (word: string) => a[a.indexOf(word) + 1]!;
    const verb = `${tool} ${a[0]} ${a[1]}`;
    if (verb === "ip link add") this.device = { mtu: Number(at("mtu")), address: at("address"), up: false, addrs: [] };
    else if (verb === "ip link set") {
      if (a.includes("up")) this.device!.up = true;
      if (a.includes("address")) {
        this.device!.address = at("address");
        this.neigh.clear(); // the kernel flushes a device's neighbours when its MAC changes
      }
    } else if (verb === "ip addr replace") this.device!.addrs.push(a[2]!.split("/")[0]!);
    else if (verb === "ip neigh replace") this.neigh.set(a[2]!, at("lladdr"));
    else if (verb === "ip neigh del") this.neigh.delete(a[2]!);
    else if (verb === "bridge fdb replace") this.fdb.set(a[2]!, at("dst"));
    else if (verb === "bridge fdb del") this.fdb.delete(a[2]!);
    else if (verb === "ip route replace") this.routes.set(a[2]!, { dev: at("dev"), mtu: Number(at("mtu")), ...(a.includes("via") ? { gateway: at("via") } : {}) });
    else if (verb === "ip route del") this.routes.delete(a[2]!);
    else throw new Error(`FakeNs: unexpected command ${tool} ${a.join(" ")}`);
  }

  /** The calls that change something: batches, and single commands other than reads. */
  writes(): Call[] {
    return this.calls.filter((c) => c.input !== undefined || /\b(add|set|replace|del)\b/.test(c.argv.join(" ")));
  }
}

const ok = (stdout: string): CommandResult => ({ code: 0, stdout, stderr: "" });

/** a-node-1 (192.168.0.3) of a domain whose active gateway is `gatewayIP`. */
function nodeRoutes(gatewayIP: string): RouteDesired {
  return computeRoutes({
    role: "node",
    localIP: "192.168.0.3",
    gatewayIP,
    localNodes: [
      { lanIP: "192.168.0.1", podCidrs: ["10.244.16.0/24"] },
      { lanIP: "192.168.0.2", podCidrs: ["10.244.17.0/24"] },
      { lanIP: "192.168.0.3", podCidrs: ["10.244.18.0/24"] },
    ],
    remotePodCidrs: ["10.244.32.0/24", "10.244.33.0/24", "10.244.34.0/24"],
    underlayMtu: 1500,
    vpnOverheadBytes: 100,
  });
}

describe("IpRouteDriver", () => {
  it("builds the device, its gateway peer and the routes from nothing, the changes in batches", async () => {
    const ns = new FakeNs();
    const drv = new IpRouteDriver({ netns: "n1", runner: ns.runner });
    const changes = await drv.apply(nodeRoutes("192.168.0.1"));
    expect(changes).toContain("fdb 0e:52:c0:a8:00:01 -> 192.168.0.1");
    expect(ns.device).toMatchObject({ up: true, addrs: ["240.168.0.3"] });
    expect(ns.neigh.get("240.168.0.1")).toBe("0e:52:c0:a8:00:01");
    expect([...ns.routes.keys()].sort()).toEqual(["10.244.32.0/24", "10.244.33.0/24", "10.244.34.0/24"]);
    expect(ns.routes.get("10.244.32.0/24")).toEqual({ dev: "raven0", gateway: "240.168.0.1", mtu: 1400 });
    // Every call ran in the namespace: ip's and bridge's own -n, or `ip netns exec` for sysctl.
    for (const c of ns.calls) {
      expect(c.argv.slice(0, 3)).toEqual(c.argv[1] === "netns" ? ["ip", "netns", "exec"] : [c.argv[0], "-n", "n1"]);
    }
  });

  it("applies the same state again without changing anything", async () => {
    const ns = new FakeNs();
    const drv = new IpRouteDriver({ runner: ns.runner });
    await drv.apply(nodeRoutes("192.168.0.1"));
    ns.calls.length = 0;
    expect(await drv.apply(nodeRoutes("192.168.0.1"))).toEqual([]);
    expect(ns.writes()).toEqual([]);
  });

  it("repoints on failover make-before-break in three processes: new FDB entry, then neighbour and routes and the old neighbour, then the old FDB entry", async () => {
    const ns = new FakeNs();
    const drv = new IpRouteDriver({ runner: ns.runner });
    await drv.apply(nodeRoutes("192.168.0.1"));
    ns.calls.length = 0;
    await drv.apply(nodeRoutes("192.168.0.2"));
    const writes = ns.writes();
    expect(writes.map((w) => w.argv.join(" "))).toEqual(["bridge -batch -", "ip -batch -", "bridge -batch -"]);
    expect(writes[0]!.input).toBe("fdb replace 0e:52:c0:a8:00:02 dev raven0 dst 192.168.0.2 self permanent\n");
    const ipLines = writes[1]!.input!.trim().split("\n");
    expect(ipLines[0]).toBe("neigh replace 240.168.0.2 lladdr 0e:52:c0:a8:00:02 dev raven0 nud permanent");
    expect(ipLines.slice(1, 4).every((l) => l.startsWith("route replace ") && l.includes(" via 240.168.0.2 ") && l.endsWith(`proto ${RAVEN_ROUTE_PROTO}`))).toBe(true);
    expect(ipLines[4]).toBe("neigh del 240.168.0.1 dev raven0");
    expect(writes[2]!.input).toBe("fdb del 0e:52:c0:a8:00:01 dev raven0 dst 192.168.0.1 self\n");
    expect([...ns.fdb]).toEqual([["0e:52:c0:a8:00:02", "192.168.0.2"]]);
    expect([...ns.neigh.keys()]).toEqual(["240.168.0.2"]);
    // The reads ran side by side, not one process per entry: 3 device/forwarding reads + 3 peer/route reads.
    expect(ns.calls.length - writes.length).toBe(6);
    expect(ns.maxInFlight).toBeGreaterThanOrEqual(3);
  });

  it("puts the pinned neighbour back when the device's MAC had to change (the kernel flushed it)", async () => {
    const ns = new FakeNs();
    const drv = new IpRouteDriver({ runner: ns.runner });
    await drv.apply(nodeRoutes("192.168.0.1"));
    ns.device!.address = "0e:00:00:00:00:99"; // drift: someone readdressed raven0
    const changes = await drv.apply(nodeRoutes("192.168.0.1"));
    expect(changes).toEqual(["link raven0 address 0e:52:c0:a8:00:03", "neigh 240.168.0.1 0e:52:c0:a8:00:01"]);
    expect(ns.neigh.get("240.168.0.1")).toBe("0e:52:c0:a8:00:01");
  });

  it("fails the apply when a batch line fails, naming it, and the next apply finishes the job", async () => {
    const ns = new FakeNs();
    const drv = new IpRouteDriver({ runner: ns.runner });
    await drv.apply(nodeRoutes("192.168.0.1"));
    ns.failLine = "neigh del 240.168.0.1 dev raven0";
    await expect(drv.apply(nodeRoutes("192.168.0.2"))).rejects.toThrow(/^ip -batch - \(line 5: neigh del 240\.168\.0\.1 dev raven0\) failed \(exit 1\): RTNETLINK/);
    ns.failLine = null;
    expect(await drv.apply(nodeRoutes("192.168.0.2"))).toEqual(["fdb 0e:52:c0:a8:00:01 -> 192.168.0.1 removed", "neigh 240.168.0.1 removed"]);
    expect([...ns.neigh.keys()]).toEqual(["240.168.0.2"]);
    expect([...ns.fdb.keys()]).toEqual(["0e:52:c0:a8:00:02"]);
  });
});
