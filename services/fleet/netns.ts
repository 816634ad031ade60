// Per-domain network namespaces on this machine: builds a plan from netns-plan.ts with `ip` (execFile, no
// shell), tears it down by prefix, and reaps what dead runs left behind.
//
// Guarantees:
// - createNetns is all-or-nothing: it refuses a prefix that already has namespaces/links or a subnet already
//   in use (checked before and after building, against concurrent runs), and on any failed command removes
//   everything of the prefix before throwing a NetnsError that carries the command and ip's stderr.
// - Ownership: a marker file <markerDir>/<prefix>.pid (the creating pid) is written *before* anything is
//   created and removed *after* everything is gone, so every live prefix has a marker. Teardown and reaping
//   only ever touch namespaces `<prefix>-*` and root links `<prefix>br` / `<prefix>h<N>`.
// - destroyNetns is idempotent, ignores what is already gone, and verifies nothing of the prefix remains.
// - No iptables, no sysctls: the underlay is one L2 bridge, so nothing is routed through the root namespace.
//   Where the kernel lacks the `dummy` link type, lan0 is an `ifb` device instead (also carrier-less and
//   silent; it only has to hold local addresses).
import { execFile } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NetnsError } from "../../shared/errors";
import {
  assertNetnsPrefix,
  netnsCommands,
  ownsLink,
  ownsNs,
  pickSubnetIndex,
  usedSubnetIndexes,
  type NetnsPlan,
} from "./netns-plan";

export {
  planNetns,
  netnsCommands,
  nsName,
  bridgeName,
  hostVethName,
  ownsLink,
  ownsNs,
  isNetnsPrefix,
  usedSubnetIndexes,
  pickSubnetIndex,
} from "./netns-plan";
export { nodeNsName, podNsName, tunnelVethName, NODE_LAN_IF, NODE_WAN_IF, NODE_POD_IF } from "./netns-hosts";
export type { NodeHost } from "./netns-hosts";
export type { NetnsPlan, NetnsInput, NetnsNodeInput, DomainNetns, IpCommand } from "./netns-plan";

export const DEFAULT_MARKER_DIR = "/run/raven-netns";
export type NetnsOptions = Readonly<{ markerDir?: string }>;

/** Prefixes that newNetnsPrefix makes and reapStaleNetns may remove. */
const REAPABLE = /^rv[0-9a-f]{6}$/;

export function newNetnsPrefix(): string {
  return `rv${randomBytes(3).toString("hex")}`;
}

/** The argv that runs `argv` inside namespace `ns`. */
export function nsExec(ns: string, argv: readonly string[]): string[] {
  return ["ip", "netns", "exec", ns, ...argv];
}

type IpResult = { ok: true; stdout: string } | { ok: false; stderr: string; missingBinary: boolean };

function ip(argv: readonly string[]): Promise<IpResult> {
  return new Promise((resolve) => {
    execFile("ip", argv, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve({ ok: true, stdout });
      const missingBinary = (err as NodeJS.ErrnoException).code === "ENOENT";
      resolve({ ok: false, stderr: String(stderr || err.message).trim(), missingBinary });
    });
  });
}

async function ipOrThrow(argv: readonly string[]): Promise<string> {
  const r = await ip(argv);
  if (r.ok) return r.stdout;
  throw new NetnsError(`ip ${argv.join(" ")} failed: ${r.stderr}`, { command: ["ip", ...argv], stderr: r.stderr });
}

async function ipJson(argv: readonly string[]): Promise<unknown[]> {
  const out = (await ipOrThrow(["-j", ...argv])).trim();
  if (out === "") return [];
  try {
    const parsed = JSON.parse(out) as unknown;
    return Array.isArray(parsed) ? parsed : [];
  } catch (err) {
    throw new NetnsError(`ip -j ${argv.join(" ")}: unparseable output`, { cause: err, command: ["ip", "-j", ...argv] });
  }
}

async function listNs(): Promise<string[]> {
  return (await ipJson(["netns", "list"]))
    .map((n) => (n as { name?: unknown }).name)
    .filter((n): n is string => typeof n === "string");
}

async function listRootLinks(): Promise<string[]> {
  return (await ipJson(["link", "show"]))
    .map((l) => (l as { ifname?: unknown }).ifname)
    .filter((n): n is string => typeof n === "string");
}

const markerFile = (dir: string, prefix: string) => join(dir, `${prefix}.pid`);

/** Subnet indexes already used by some address in the root namespace. */
async function usedIndexes(): Promise<Set<number>> {
  return usedSubnetIndexes(await ipJson(["addr", "show"]));
}

/** An index 0..255 whose 198.18.i.0/24 no root-namespace address overlaps; starts at a random index. */
export async function findFreeSubnetIndex(): Promise<number> {
  const i = pickSubnetIndex(await usedIndexes(), randomInt(256));
  if (i === undefined) throw new NetnsError("no free underlay subnet: every 198.18.i.0/24 (i = 0..255) is in use");
  return i;
}

export async function createNetns(plan: NetnsPlan, options: NetnsOptions = {}): Promise<void> {
  const { prefix } = plan;
  assertNetnsPrefix(prefix);
  const markerDir = options.markerDir ?? DEFAULT_MARKER_DIR;
  const [nss, links, used] = await Promise.all([listNs(), listRootLinks(), usedIndexes()]);
  const existing = [...nss.filter((n) => ownsNs(prefix, n)), ...links.filter((l) => ownsLink(prefix, l))];
  if (existing.length > 0)
    throw new NetnsError(
      `prefix ${prefix} is already in use (${existing.join(", ")}); destroy it or pick a new prefix`,
    );
  if (used.has(plan.subnetIndex))
    throw new NetnsError(`subnet ${plan.subnet} is already in use in the root namespace; pick another subnetIndex`);

  mkdirSync(markerDir, { recursive: true, mode: 0o755 });
  // Written whole (temp file + rename) so a reaper never reads a half-written, ownerless marker.
  const tmp = join(markerDir, `.${prefix}.pid.tmp`);
  writeFileSync(tmp, `${process.pid}\n`);
  renameSync(tmp, markerFile(markerDir, prefix));
  let useFallback = false;
  try {
    for (const cmd of netnsCommands(plan)) {
      if (useFallback && cmd.fallback) {
        await ipOrThrow(cmd.fallback);
        continue;
      }
      const r = await ip(cmd.argv);
      if (r.ok) continue;
      if (cmd.fallback && /unknown device type/i.test(r.stderr)) {
        useFallback = true;
        await ipOrThrow(cmd.fallback);
        continue;
      }
      const hint = r.missingBinary ? " (is iproute2 installed?)" : "";
      throw new NetnsError(`ip ${cmd.argv.join(" ")} failed${hint}: ${r.stderr}`, {
        command: ["ip", ...cmd.argv],
        stderr: r.stderr,
      });
    }
    // A concurrent run may have taken the same subnet between the check above and our bridge address: then
    // both of us fail here (and roll back) rather than share a subnet with ambiguous routes.
    const others = (await ipJson(["addr", "show"])).filter((l) => (l as { ifname?: unknown }).ifname !== plan.bridge);
    if (usedSubnetIndexes(others).has(plan.subnetIndex)) {
      throw new NetnsError(
        `subnet ${plan.subnet} was taken by another interface while ${prefix} was being built; retry with a new subnetIndex`,
      );
    }
  } catch (err) {
    try {
      await destroyNetns(prefix, options);
    } catch (cleanupErr) {
      throw new NetnsError(`${(err as Error).message}; cleanup also failed: ${(cleanupErr as Error).message}`, {
        cause: err,
        ...(err instanceof NetnsError && err.command ? { command: err.command } : {}),
        ...(err instanceof NetnsError && err.stderr !== undefined ? { stderr: err.stderr } : {}),
      });
    }
    throw err;
  }
}

const GONE = /cannot find device|no such file|does not exist|not found/i;

/** Removes every namespace `<prefix>-*` and root link of the prefix, then its marker. Idempotent. */
export async function destroyNetns(prefix: string, options: NetnsOptions = {}): Promise<void> {
  assertNetnsPrefix(prefix);
  const markerDir = options.markerDir ?? DEFAULT_MARKER_DIR;
  const probe = await ip(["-j", "link", "show"]);
  if (!probe.ok && probe.missingBinary) {
    // Without ip nothing can have been created; only a marker could be left.
    rmSync(markerFile(markerDir, prefix), { force: true });
    return;
  }
  const failures: string[] = [];
  const attempt = async (argv: string[]) => {
    const r = await ip(argv);
    if (!r.ok && !GONE.test(r.stderr)) failures.push(`ip ${argv.join(" ")}: ${r.stderr}`);
  };
  // Host veth ends first (each takes its peer in the namespace with it), then the bridge, then namespaces:
  // a namespace kept alive by a process still running inside it cannot keep a root link around this way.
  const links = (await listRootLinks()).filter((l) => ownsLink(prefix, l));
  links.sort((a, b) => (a.endsWith("br") ? 1 : 0) - (b.endsWith("br") ? 1 : 0));
  for (const l of links) await attempt(["link", "del", l]);
  for (const n of (await listNs()).filter((x) => ownsNs(prefix, x))) await attempt(["netns", "del", n]);

  const left = [
    ...(await listNs()).filter((n) => ownsNs(prefix, n)),
    ...(await listRootLinks()).filter((l) => ownsLink(prefix, l)),
  ];
  if (left.length > 0) {
    throw new NetnsError(
      `could not remove ${left.join(", ")} of prefix ${prefix}${failures.length ? `: ${failures.join("; ")}` : ""}`,
    );
  }
  rmSync(markerFile(markerDir, prefix), { force: true });
}

export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the namespaces and links of every `rv??????` prefix whose owner is gone: its marker names a pid for
 * which `liveCheck` is false, or it has no marker at all (a live owner always has one: see the header).
 * Returns the reaped prefixes, sorted.
 */
export async function reapStaleNetns(
  liveCheck: (pid: number) => boolean = isPidAlive,
  options: NetnsOptions = {},
): Promise<string[]> {
  const markerDir = options.markerDir ?? DEFAULT_MARKER_DIR;
  const probe = await ip(["-V"]);
  if (!probe.ok) return [];
  // List what exists *before* reading markers: a concurrent creator writes its marker before its first link,
  // so anything listed here already has a marker by the time it is read below.
  const prefixes = new Set<string>();
  for (const n of await listNs()) {
    const p = n.slice(0, 8);
    if (REAPABLE.test(p) && ownsNs(p, n)) prefixes.add(p);
  }
  for (const l of await listRootLinks()) {
    const p = l.slice(0, 8);
    if (REAPABLE.test(p) && ownsLink(p, l)) prefixes.add(p);
  }
  let markers: string[] = [];
  try {
    markers = readdirSync(markerDir);
  } catch {
    // no marker directory: nothing was ever created with markers here
  }
  for (const f of markers) {
    const p = f.replace(/\.pid$/, "");
    if (f.endsWith(".pid") && REAPABLE.test(p)) prefixes.add(p);
  }
  const reaped: string[] = [];
  for (const p of [...prefixes].sort()) {
    let pid: number | undefined;
    try {
      const n = Number(readFileSync(markerFile(markerDir, p), "utf8").trim());
      if (Number.isInteger(n) && n > 0) pid = n;
    } catch {
      // no marker: owner unknown, and so gone
    }
    if (pid !== undefined && liveCheck(pid)) continue;
    await destroyNetns(p, options);
    reaped.push(p);
  }
  return reaped;
}
