// Traffic between network namespaces for the root-only tunnel tests: running commands (in a namespace or not),
// a TCP sink and a bulk sender as `node -e` scripts (so a pod namespace needs nothing but the node binary),
// the kernel's fragmentation counter, and what a run left behind. Every process started here goes into the
// caller's `helpers` list, which the caller kills in afterAll; the sink also exits when its stdin closes, so it
// does not outlive the test process.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { nsExec } from "../../services/fleet/netns";

export const MIB = 1024 * 1024;
/** The port the sink listens on. */
export const SINK_PORT = 5201;

// A TCP sink: counts bytes per connection and answers with the count when the client ends.
const SINK = `const net = require("net");
net.createServer((c) => { let n = 0; c.on("data", (d) => (n += d.length)); c.on("end", () => c.end(String(n))); })
  .listen(+process.argv[2], process.argv[1], () => console.log("ready"));
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;
// A client: sends N bytes in whole 64 KiB chunks, waits for the sink's count; prints {bytes, ms}.
const SEND = `const net = require("net"); const [, ip, port, total] = process.argv; const chunk = Buffer.alloc(64 * 1024, 7);
const t0 = process.hrtime.bigint(); let sent = 0, reply = "";
const s = net.connect(+port, ip, () => { const pump = () => { while (sent < +total) { sent += chunk.length; if (!s.write(chunk)) return s.once("drain", pump); } s.end(); }; pump(); });
s.setTimeout(20000, () => { console.error("timeout"); process.exit(2); });
s.on("data", (d) => (reply += d)); s.on("error", (e) => { console.error(e.message); process.exit(1); });
s.on("end", () => { console.log(JSON.stringify({ bytes: +reply, ms: Number(process.hrtime.bigint() - t0) / 1e6 })); process.exit(0); });`;

/** Runs `argv` to completion; its stdout, or an error carrying the command and its stderr. */
export function run(argv: readonly string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, maxBuffer: 16 * MIB }, (err, stdout, stderr) =>
      err ? reject(new Error(`${argv.join(" ")}: ${stderr || stdout || err.message}`)) : resolve(stdout),
    );
  });
}

export const inNs = (ns: string, ...argv: string[]) => run(nsExec(ns, argv));

/** Starts `node -e script ...args` in `ns` (into `helpers`); resolves once it prints "ready". */
export function startInNs(helpers: ChildProcess[], ns: string, script: string, ...args: string[]): Promise<void> {
  const [cmd, ...rest] = nsExec(ns, [process.execPath, "-e", script, ...args]);
  const child = spawn(cmd!, rest, { stdio: ["pipe", "pipe", "pipe"] });
  helpers.push(child);
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => String(d).includes("ready") && resolve());
    child.once("exit", (code) => reject(new Error(`helper in ${ns} exited with ${code}: ${err}`)));
  });
}

/** Starts the TCP sink in `ns` on `ip`:SINK_PORT. */
export const startSink = (helpers: ChildProcess[], ns: string, ip: string) =>
  startInNs(helpers, ns, SINK, ip, String(SINK_PORT));

/** Sends `bytes` from namespace `fromNs` to the sink on `toIp` (rounded up to whole 64 KiB chunks): what the sink counted, and the time to its answer. */
export async function send(fromNs: string, toIp: string, bytes: number): Promise<{ bytes: number; ms: number }> {
  return JSON.parse(await inNs(fromNs, process.execPath, "-e", SEND, toIp, String(SINK_PORT), String(bytes))) as {
    bytes: number;
    ms: number;
  };
}

/** "`bytes` in `ms`" as a log line fragment: "64 MiB in 812 ms = 78.8 MiB/s". */
export const throughput = (bytes: number, ms: number) =>
  `${bytes / MIB} MiB in ${ms.toFixed(0)} ms = ${(bytes / MIB / (ms / 1000)).toFixed(1)} MiB/s`;

/** The IPv4 FragCreates counter of namespace `ns`: packets this namespace fragmented so far. */
export async function fragCreates(ns: string): Promise<number> {
  const lines = (await inNs(ns, "cat", "/proc/net/snmp")).split("\n").filter((l) => l.startsWith("Ip:"));
  const head = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[head.indexOf("FragCreates")]);
}

/** Namespaces and root-namespace links whose names start with `prefix`. */
export async function leftovers(prefix: string): Promise<string[]> {
  const nss = JSON.parse((await run(["ip", "-j", "netns", "list"])).trim() || "[]") as { name: string }[];
  const links = JSON.parse(await run(["ip", "-j", "link", "show"])) as { ifname: string }[];
  return [...nss.map((n) => n.name), ...links.map((l) => l.ifname)].filter((n) => n.startsWith(prefix));
}
