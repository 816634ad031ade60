// The route driver: makes one network namespace's VXLAN device, its pinned peers and Raven's routes match a
// RouteDesired (routes.ts) with `ip` and `bridge`.
//
// Guarantees:
// - apply is idempotent and level-triggered: it reads the live state, changes only what differs and returns
//   the list of changes (empty = nothing touched). It owns exactly: the VXLAN device `desired.vxlan.name`
//   (with its addresses, neighbours and FDB entries) and the routes of protocol RAVEN_ROUTE_PROTO in the
//   main table; anything else in the namespace is left alone.
// - Failover (the gateway moved) is make-before-break: the new gateway's neighbour and FDB entry are added,
//   the routes are replaced in place (`ip route replace`, no window without a route), then the old
//   gateway's entries go.
// - Few processes, since a failover waits on them: the state is read by commands run side by side, and the
//   changes go in at most three batches (`bridge -batch`, `ip -batch`, `bridge -batch`, in that order, each
//   stopping at its first failed line) instead of a process per change.
// - A VXLAN device whose VNI, port or local address differ is recreated (the kernel cannot change those).
// - IPv4 forwarding is switched on when desired; cleanup() restores the value found before the first apply.
// - cleanup() removes the device and the owned routes; idempotent.
// - watch() reports every link and route change in the namespace (`ip monitor link route`, one long-lived
//   process with a parent-death signal, started again if it exits), so that a caller can repair drift at
//   once: a VPN device that was recreated (wireguard-go restarted) has lost the routes into it.
import { spawn, type ChildProcess } from "node:child_process";
import { CommandError, TunnelError } from "../../shared/errors";
import { execInNs, execRunner, inNs, runOk, type Runner } from "./exec";
import { RAVEN_ROUTE_PROTO, type RouteDesired, type RouteEntry, type VxlanDesired } from "./routes";

export type IpRouteDriverOptions = Readonly<{
  /** Network namespace to act in (`ip netns` name); the current one when left out. */
  netns?: string;
  runner?: Runner;
}>;

type LinkJson = {
  ifname?: string;
  mtu?: number;
  address?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number; learning?: boolean } };
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
};
type RouteJson = { dst?: string; gateway?: string; dev?: string; metrics?: { mtu?: number }[] };
type NeighJson = { dst?: string; lladdr?: string; state?: string[] };
type FdbJson = { mac?: string; dst?: string; state?: string };

export class IpRouteDriver {
  readonly netns: string | undefined;
  private readonly run: Runner;
  private deviceName: string | null = null;
  private forwardingBefore: string | null = null;

  constructor(options: IpRouteDriverOptions = {}) {
    this.netns = options.netns;
    this.run = options.runner ?? execRunner;
  }

  private ip(...args: string[]): Promise<string> {
    return runOk(this.run, inNs(this.netns, "ip", ...args));
  }

  private async json<T>(tool: "ip" | "bridge", ...args: string[]): Promise<T[]> {
    const out = (await runOk(this.run, inNs(this.netns, tool, "-j", ...args))).trim();
    if (out === "") return [];
    try {
      const v = JSON.parse(out) as unknown;
      return Array.isArray(v) ? (v as T[]) : [];
    } catch (err) {
      throw new TunnelError(`${tool} -j ${args.join(" ")}: unparseable output`, { cause: err });
    }
  }

  private async link(name: string): Promise<LinkJson | undefined> {
    const r = await this.run(inNs(this.netns, "ip", "-d", "-j", "link", "show", "dev", name));
    if (r.code !== 0) return undefined; // "Device does not exist"
    return (JSON.parse(r.stdout) as LinkJson[])[0];
  }

  /**
   * Runs `tool -batch -` with `lines` (none: nothing runs). The tool stops at the first failed line (those
   * before it are done); the error names that line.
   */
  private async batch(tool: "ip" | "bridge", lines: readonly string[][]): Promise<void> {
    if (lines.length === 0) return;
    for (const l of lines) {
      // iproute2's batch reader splits on blanks and treats quotes, backslashes and '#' specially.
      const bad = l.find((arg) => arg === "" || /[\s"'\\#]/.test(arg));
      if (bad !== undefined) throw new TunnelError(`${tool} batch: argument ${JSON.stringify(bad)} of "${l.join(" ")}" is empty or has a blank, quote, backslash or '#'`);
    }
    const argv = inNs(this.netns, tool, "-batch", "-");
    const r = await this.run(argv, { input: lines.map((l) => l.join(" ")).join("\n") + "\n" });
    if (r.code === 0) return;
    const at = /-:(\d+)/.exec(r.stderr);
    const line = at ? lines[Number(at[1]) - 1] : undefined;
    throw new CommandError(line ? [...argv, `(line ${at![1]}: ${line.join(" ")})`] : argv, r.stderr.trim() || r.stdout.trim(), r.code);
  }

  /** Makes the namespace match `desired`; returns what was changed (empty when it already matched). */
  async apply(desired: RouteDesired): Promise<string[]> {
    const changes: string[] = [];
    const v = desired.vxlan;
    if (this.deviceName !== null && this.deviceName !== v.name) {
      await this.removeDevice(this.deviceName, changes);
    }
    this.deviceName = v.name;
    const readPeers = () =>
      Promise.all([
        this.json<NeighJson>("ip", "neigh", "show", "dev", v.name),
        this.json<FdbJson>("bridge", "fdb", "show", "dev", v.name),
        this.json<RouteJson>("ip", "route", "show", "proto", String(RAVEN_ROUTE_PROTO)),
      ]);
    // Read everything at once; the device's entries again if it was made or readdressed (a new MAC flushes
    // its neighbours). Settled before judging, so nothing still runs once apply has failed.
    const [fwd, dev, read] = await Promise.allSettled([
      desired.forwarding ? this.ensureForwarding(changes) : undefined,
      this.ensureDevice(v, changes),
      readPeers(),
    ]);
    if (fwd.status === "rejected") throw fwd.reason;
    if (dev.status === "rejected") throw dev.reason;
    // A failed read means no device yet: read once it exists.
    const [neigh, fdb, actual] = dev.value || read.status === "rejected" ? await readPeers() : read.value;

    const fdbAdd: string[][] = [];
    const ipLines: string[][] = [];
    const fdbDel: string[][] = [];
    // Peers first (make), then routes, then stale peers (break).
    for (const p of v.peers) {
      const n = neigh.find((x) => x.dst === p.address);
      if (!n || n.lladdr !== p.mac || !n.state?.includes("PERMANENT")) {
        ipLines.push(["neigh", "replace", p.address, "lladdr", p.mac, "dev", v.name, "nud", "permanent"]);
        changes.push(`neigh ${p.address} ${p.mac}`);
      }
      if (!fdb.some((f) => f.mac === p.mac && f.dst === p.lanIP)) {
        fdbAdd.push(["fdb", "replace", p.mac, "dev", v.name, "dst", p.lanIP, "self", "permanent"]);
        changes.push(`fdb ${p.mac} -> ${p.lanIP}`);
      }
    }
    for (const r of desired.routes) {
      const a = actual.find((x) => x.dst === r.dst);
      if (a && sameRoute(a, r)) continue;
      const via = r.via === null ? [] : ["via", r.via];
      const onlink = r.via === null ? [] : ["onlink"];
      ipLines.push(["route", "replace", r.dst, ...via, "dev", r.dev, ...onlink, "mtu", String(r.mtu), "proto", String(RAVEN_ROUTE_PROTO)]);
      changes.push(`route ${r.dst}${r.via ? ` via ${r.via}` : ""} dev ${r.dev} mtu ${r.mtu}`);
    }
    const wanted = new Set(desired.routes.map((r) => r.dst));
    for (const a of actual) {
      if (a.dst === undefined || wanted.has(a.dst)) continue;
      ipLines.push(["route", "del", a.dst, "proto", String(RAVEN_ROUTE_PROTO)]);
      changes.push(`route ${a.dst} removed`);
    }
    const peerMacs = new Set(v.peers.map((p) => `${p.mac} ${p.lanIP}`));
    for (const f of fdb) {
      if (f.mac === undefined || f.dst === undefined || peerMacs.has(`${f.mac} ${f.dst}`)) continue;
      fdbDel.push(["fdb", "del", f.mac, "dev", v.name, "dst", f.dst, "self"]);
      changes.push(`fdb ${f.mac} -> ${f.dst} removed`);
    }
    const peerAddrs = new Set(v.peers.map((p) => p.address));
    for (const n of neigh) {
      if (n.dst === undefined || peerAddrs.has(n.dst) || !n.state?.includes("PERMANENT")) continue;
      ipLines.push(["neigh", "del", n.dst, "dev", v.name]);
      changes.push(`neigh ${n.dst} removed`);
    }
    await this.batch("bridge", fdbAdd);
    await this.batch("ip", ipLines);
    await this.batch("bridge", fdbDel);
    return changes;
  }

  private async ensureForwarding(changes: string[]): Promise<void> {
    const now = (await runOk(this.run, execInNs(this.netns, ["sysctl", "-n", "net.ipv4.ip_forward"]))).trim();
    if (this.forwardingBefore === null) this.forwardingBefore = now;
    if (now === "1") return;
    await runOk(this.run, execInNs(this.netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]));
    changes.push("net.ipv4.ip_forward=1");
  }

  /** Makes the VXLAN device match; true when it was (re)created or got a new MAC, so its entries must be read again. */
  private async ensureDevice(v: VxlanDesired, changes: string[]): Promise<boolean> {
    let made = false;
    let [link, addrs] = await Promise.all([
      this.link(v.name),
      this.json<LinkJson>("ip", "addr", "show", "dev", v.name).then((l) => l[0]?.addr_info ?? []).catch(() => null),
    ]);
    const info = link?.linkinfo?.info_data;
    if (link && (link.linkinfo?.info_kind !== "vxlan" || info?.id !== v.vni || info?.port !== v.port || info?.local !== v.localIP || info?.learning !== false)) {
      await this.ip("link", "del", v.name);
      changes.push(`link ${v.name} removed (kind/vni/port/local changed)`);
      link = undefined;
    }
    if (!link) {
      await this.ip(
        "link", "add", v.name, "address", v.mac, "mtu", String(v.mtu),
        "type", "vxlan", "id", String(v.vni), "dstport", String(v.port), "local", v.localIP, "nolearning",
      );
      changes.push(`link ${v.name} vxlan vni ${v.vni} port ${v.port} local ${v.localIP}`);
      link = await this.link(v.name);
      addrs = null;
      made = true;
    }
    if (link?.address !== v.mac) {
      await this.ip("link", "set", v.name, "address", v.mac);
      changes.push(`link ${v.name} address ${v.mac}`);
      made = true;
    }
    if (link?.mtu !== v.mtu) {
      await this.ip("link", "set", v.name, "mtu", String(v.mtu));
      changes.push(`link ${v.name} mtu ${v.mtu}`);
    }
    if (!link?.flags?.includes("UP")) {
      await this.ip("link", "set", v.name, "up");
      changes.push(`link ${v.name} up`);
    }
    addrs ??= (await this.json<LinkJson>("ip", "addr", "show", "dev", v.name))[0]?.addr_info ?? [];
    const v4 = addrs.filter((a) => a.family === "inet");
    if (!v4.some((a) => a.local === v.address && a.prefixlen === 32)) {
      await this.ip("addr", "replace", `${v.address}/32`, "dev", v.name);
      changes.push(`addr ${v.address}/32`);
    }
    for (const a of v4) {
      if (a.local === v.address && a.prefixlen === 32) continue;
      await this.ip("addr", "del", `${a.local}/${a.prefixlen}`, "dev", v.name);
      changes.push(`addr ${a.local}/${a.prefixlen} removed`);
    }
    return made;
  }

  private async removeDevice(name: string, changes: string[]): Promise<void> {
    if (!(await this.link(name))) return;
    await this.ip("link", "del", name);
    changes.push(`link ${name} removed`);
  }

  /**
   * Calls `onChange` for every link or route change in the namespace (own changes included: a caller that
   * applies on each call converges, since an apply that finds nothing to do changes nothing), until the
   * returned function is called.
   */
  watch(onChange: () => void, restartMs = 1_000): () => void {
    let child: ChildProcess | null = null;
    let stopped = false;
    let timer: NodeJS.Timeout | null = null;
    const start = () => {
      const argv = ["setpriv", "--pdeathsig", "KILL", ...inNs(this.netns, "ip", "monitor", "link", "route")];
      const c = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "ignore"] });
      child = c;
      c.stdout!.on("data", () => onChange());
      c.once("error", () => undefined); // reported as its exit
      c.once("close", () => {
        if (child === c) child = null;
        if (!stopped) timer = setTimeout(start, restartMs);
      });
    };
    start();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      child?.kill("SIGKILL");
    };
  }

  /** Removes the device (with its routes, neighbours, FDB) and any other owned route; restores forwarding. */
  async cleanup(): Promise<void> {
    const changes: string[] = [];
    if (this.deviceName !== null) await this.removeDevice(this.deviceName, changes);
    for (const a of await this.json<RouteJson>("ip", "route", "show", "proto", String(RAVEN_ROUTE_PROTO))) {
      if (a.dst !== undefined) await this.ip("route", "del", a.dst, "proto", String(RAVEN_ROUTE_PROTO));
    }
    if (this.forwardingBefore !== null && this.forwardingBefore !== "1") {
      await runOk(this.run, execInNs(this.netns, ["sysctl", "-qw", `net.ipv4.ip_forward=${this.forwardingBefore}`]));
    }
    this.forwardingBefore = null;
    this.deviceName = null;
  }
}

function sameRoute(a: RouteJson, r: RouteEntry): boolean {
  return a.dev === r.dev && (a.gateway ?? null) === r.via && a.metrics?.[0]?.mtu === r.mtu;
}
