// Per-domain network namespaces for real (root + iproute2): two domains with the SAME internal IPs, each
// answering on its own 192.168.1.11; the root namespace and the other domain reach a domain through the
// bridge underlay. Every namespace and link uses fresh random prefixes and is destroyed in afterAll.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetnsError } from "../../shared/errors";
import {
  createNetns,
  DEFAULT_MARKER_DIR,
  destroyNetns,
  findFreeSubnetIndex,
  isPidAlive,
  newNetnsPrefix,
  nsExec,
  planNetns,
  reapStaleNetns,
  type NetnsPlan,
} from "../../services/fleet/netns";

function skipReason(): string | null {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "needs root (ip netns add)";
  if (spawnSync("ip", ["-V"]).error) return "needs iproute2 (`ip` not found)";
  return null;
}
const skip = skipReason();
const PORT = 7411;

// A TCP server inside a namespace: answers every connection with the domain name, on each address given.
const SERVER = `const net = require("net"); const [, name, port, ...ips] = process.argv; let n = 0;
for (const ip of ips) net.createServer((c) => c.end(name + "\\n")).listen(+port, ip, () => { if (++n === ips.length) console.log("ready"); });
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;
const CLIENT = `const net = require("net"); const [, ip, port] = process.argv; let out = "";
const s = net.connect(+port, ip); s.setTimeout(3000, () => { console.error("timeout"); process.exit(2); });
s.on("data", (d) => (out += d)); s.on("end", () => { process.stdout.write(out); process.exit(0); });
s.on("error", (e) => { console.error(e.message); process.exit(1); });`;

function run(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: 10_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${argv.join(" ")}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

const fromNs = (ns: string, ip: string) => run(nsExec(ns, [process.execPath, "-e", CLIENT, ip, String(PORT)]));

function fromRoot(ip: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const s = connect(PORT, ip);
    s.setTimeout(3_000, () => s.destroy(new Error(`timeout connecting to ${ip}`)));
    s.on("data", (d) => (out += d));
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
}

function startServer(ns: string, name: string, ips: string[]): Promise<ChildProcess> {
  const [cmd, ...args] = nsExec(ns, [process.execPath, "-e", SERVER, name, String(PORT), ...ips]);
  const child = spawn(cmd!, args, { stdio: ["pipe", "pipe", "pipe"] });
  servers.push(child);
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => String(d).includes("ready") && resolve(child));
    child.once("exit", (code) => reject(new Error(`server in ${ns} exited with ${code}: ${err}`)));
  });
}

async function leftovers(prefix: string): Promise<string[]> {
  const ns = JSON.parse((await run(["ip", "-j", "netns", "list"])).trim() || "[]") as { name: string }[];
  const links = JSON.parse(await run(["ip", "-j", "link", "show"])) as { ifname: string }[];
  return [...ns.map((n) => n.name), ...links.map((l) => l.ifname)].filter((n) => n.startsWith(prefix));
}

const servers: ChildProcess[] = [];
const prefixes: string[] = [];
let plan: NetnsPlan;

describe.skipIf(skip !== null)(`per-domain network namespaces${skip ? ` (skipped: ${skip})` : ""}`, () => {
  beforeAll(async () => {
    const prefix = newNetnsPrefix();
    prefixes.push(prefix);
    const subnetIndex = await findFreeSubnetIndex();
    const nodes = (d: string) => [
      { name: `${d}-1`, internalIP: "192.168.1.11", candidate: true },
      { name: `${d}-2`, internalIP: "192.168.1.12", candidate: false },
    ];
    plan = planNetns({
      prefix,
      subnetIndex,
      domains: [
        { domain: "edge-a", nodes: nodes("a") },
        { domain: "edge-b", nodes: nodes("b") },
      ],
    });
    await createNetns(plan);
    for (const d of plan.domains) await startServer(d.ns, d.domain, [d.lanIPs[`${d.domain.slice(-1)}-1`]!, d.domainIP]);
  }, 30_000);

  afterAll(async () => {
    for (const s of servers) s.kill("SIGKILL");
    for (const p of prefixes) await destroyNetns(p).catch((err) => console.error(`cleanup of ${p}:`, err));
  });

  it("gives each domain its own 192.168.1.11: the same IP answers differently per namespace", async () => {
    const [a, b] = plan.domains;
    expect(a!.lanIPs).toEqual({ "a-1": "192.168.1.11", "a-2": "192.168.1.12" });
    expect(b!.lanIPs).toEqual({ "b-1": "192.168.1.11", "b-2": "192.168.1.12" });
    expect(await fromNs(a!.ns, "192.168.1.11")).toBe("edge-a\n");
    expect(await fromNs(b!.ns, "192.168.1.11")).toBe("edge-b\n");
  });

  it("reaches a domain's underlay IP from the root namespace and from the other domain, through the bridge", async () => {
    const [a, b] = plan.domains;
    expect(await fromRoot(a!.domainIP)).toBe("edge-a\n");
    expect(await fromRoot(b!.domainIP)).toBe("edge-b\n");
    expect(await fromNs(a!.ns, b!.domainIP)).toBe("edge-b\n");
    expect(await fromNs(b!.ns, a!.domainIP)).toBe("edge-a\n");
    const wan = JSON.parse(await run(["ip", "-n", a!.ns, "-j", "addr", "show", "dev", "wan0"])) as {
      addr_info: { local: string }[];
    }[];
    expect(wan[0]!.addr_info.map((x) => x.local)).toContain(a!.underlayIPs["a-1"]);
  });

  it("refuses a prefix that already exists and records the owner pid", async () => {
    await expect(createNetns(plan)).rejects.toThrow(/already in use/);
    expect(existsSync(join(DEFAULT_MARKER_DIR, `${plan.prefix}.pid`))).toBe(true);
  });

  it("rolls back everything when a command fails, reporting the command and ip's stderr", async () => {
    const prefix = newNetnsPrefix();
    prefixes.push(prefix);
    const good = planNetns({
      prefix,
      subnetIndex: await findFreeSubnetIndex(),
      domains: [{ domain: "x", nodes: [{ name: "x-1", internalIP: "10.1.1.1", candidate: true }] }],
    });
    const bad: NetnsPlan = { ...good, domains: [{ ...good.domains[0]!, lanIPs: { "x-1": "10.1.1.999" } }] };
    const err = await createNetns(bad).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NetnsError);
    expect((err as NetnsError).command).toEqual([
      "ip",
      "-n",
      `${prefix}-x`,
      "addr",
      "add",
      "10.1.1.999/32",
      "dev",
      "lan0",
    ]);
    expect((err as NetnsError).stderr).toMatch(/\S/);
    expect((err as NetnsError).message).toContain("ip -n");
    expect(await leftovers(prefix)).toEqual([]);
    expect(existsSync(join(DEFAULT_MARKER_DIR, `${prefix}.pid`))).toBe(false);
  });

  it("reaps a prefix whose owner is dead and keeps a live one", async () => {
    const prefix = newNetnsPrefix();
    prefixes.push(prefix);
    const stale = planNetns({
      prefix,
      subnetIndex: await findFreeSubnetIndex(),
      domains: [{ domain: "y", nodes: [{ name: "y-1", internalIP: "10.2.2.2", candidate: false }] }],
    });
    await createNetns(stale);
    const deadPid = spawnSync("true").pid!;
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(DEFAULT_MARKER_DIR, `${prefix}.pid`), `${deadPid}\n`);
    const reaped = await reapStaleNetns((pid) => pid !== deadPid && isPidAlive(pid));
    expect(reaped).toContain(prefix);
    expect(reaped).not.toContain(plan.prefix);
    expect(await leftovers(prefix)).toEqual([]);
    expect(await leftovers(plan.prefix)).not.toEqual([]);
  });

  it("destroys everything of the prefix, idempotently, even with processes still inside", async () => {
    await destroyNetns(plan.prefix);
    expect(await leftovers(plan.prefix)).toEqual([]);
    expect(await run(["ip", "netns", "list"])).not.toContain(plan.prefix);
    expect(existsSync(join(DEFAULT_MARKER_DIR, `${plan.prefix}.pid`))).toBe(false);
    await destroyNetns(plan.prefix);
  });
});
