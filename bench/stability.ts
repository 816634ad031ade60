// bench:stability — does the default fleet (the demo topology, network namespaces, tunnel mode with
// strongSwan) hold steady, cold, idle and loaded? As root, in one process tree:
//  1. cold: `sync; echo 3 > /proc/sys/vm/drop_caches`, then the fleet is launched; the time from launch until
//     every domain has its actives, and the term changes after each domain's first election (a fresh KV
//     elects term 1, so each term above 1 is one), counted after a settle of SETTLE_MS;
//  2. a quiet window (--quiet-s, the observer following assignments only): term changes, and the CPU of
//     every process the fleet started, in % of one core (from /proc, per kind of process), beside a
//     reference measured in the same window: an empty Node.js process woken 100 times a second, the price of
//     a wake-up on this host at this time;
//  3. a loaded window (--noisy-s) of `stress-ng --cpu 4` at the control path's own priority (fleet.ts
//     CONTROL_NICE), with --kills SIGKILLs of active gateways spread over it, each once both candidates of its
//     Gateway are healthy: term changes that no kill explains (each kill explains its Gateway's next term
//     change), the failover time of each kill (kill -> the observer sees the assignment naming another
//     active) and split brain (the observer's claims, as in the chaos test);
//  4. after the hog stops, --recover-s of watching: ms until the last term change (0 when none).
// Figures on stdout, progress on stderr. Everything it started (fleet, namespaces, the hog's process group)
// is stopped in `finally` and on SIGINT/SIGTERM; the run directory with the fleet's logs is removed, except
// when the run failed or was interrupted: then it is kept and its path printed.
// Last line: stability cold_converge_ms=A cold_flaps=B quiet_flaps=C fleet_cpu_pct=D noisy_flaps=E
//            noisy_kill_p99_ms=F split_brain=G recover_ms=H
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFlags } from "../shared/args";
import { MissingDependencyError } from "../shared/errors";
import { runMain } from "../shared/process";
import type { StatusReply } from "../shared/protocol";
import { loadTopology } from "../shared/topology";
import { REPO_ROOT } from "../services/fleet/build";
import { CONTROL_NICE, Fleet } from "../services/fleet/fleet";
import { FleetObserver, replicasIn } from "../services/fleet/observer";
import { checkStrongSwanInstalled, kernelHasEsp } from "../lib/vpn";
import { integerFlag, once } from "./flags";
import { startCpuHog, stopCpuHog } from "./hog";
import { PrerequisiteError } from "./tunnel-fleet";
import { consoleReporter as out } from "./proxy-lib";
import {
  descendants,
  goals,
  pidCpuPct,
  settledAfter,
  stabilityLine,
  termChanges,
  treeCpuPct,
  unexplainedChanges,
  type Kill,
  type ProcSample,
  type TermChange,
} from "./stability-lib";
import { figure } from "./tunnel-lib";

/** After the fleet reports every domain elected, this long still counts as the cold start. */
const SETTLE_MS = 10_000;
/** A kill with no new active named within this long counts as a failed failover (inf). */
const FAILOVER_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every process on the machine: parent, CPU ticks so far and its name (comm). */
function snapshot(): Map<number, ProcSample & { comm: string }> {
  const out = new Map<number, ProcSample & { comm: string }>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const f = stat.slice(close + 2).split(" ");
      out.set(Number(d), {
        ppid: Number(f[1]),
        ticks: Number(f[11]) + Number(f[12]),
        comm: stat.slice(stat.indexOf("(") + 1, close),
      });
    } catch {
      // exited while we read
    }
  }
  return out;
}

/** CPU % of one core per kind of process (the fleet's kinds; their children by name). */
function cpuByKind(
  fleet: Fleet,
  before: Map<number, ProcSample & { comm: string }>,
  after: Map<number, ProcSample & { comm: string }>,
  seconds: number,
  exclude: number,
): Map<string, { pct: number; n: number }> {
  const kindOf = new Map<number, string>();
  for (const p of fleet.procs.values()) if (p.pid !== undefined) kindOf.set(p.pid, p.spec.kind);
  const groups = new Map<string, { pct: number; n: number }>();
  for (const pid of descendants(after, process.pid)) {
    if (pid === exclude) continue;
    let kind = kindOf.get(pid);
    if (!kind) {
      let up = after.get(pid)!.ppid;
      while (up > 1 && !kindOf.has(up) && after.has(up)) up = after.get(up)!.ppid;
      kind = `${after.get(pid)!.comm} (under ${kindOf.get(up) ?? "the launcher"})`;
    }
    const g = groups.get(kind) ?? { pct: 0, n: 0 };
    g.pct += pidCpuPct(before, after, pid, seconds);
    g.n++;
    groups.set(kind, g);
  }
  return groups;
}

/** Term changes the observer saw in [from, to). */
function changesIn(observer: FleetObserver, from: number, to = Infinity): TermChange[] {
  return termChanges(observer.history).filter((c) => c.at >= from && c.at < to);
}

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "npm run bench:stability -- [options]   (as root)",
    "Holds the default fleet (namespaces, tunnel mode, strongSwan) to steady terms: a cold start after dropping the page cache, a quiet window with the fleet's CPU, a window of stress-ng --cpu 4 at the control path's priority with SIGKILLs of active gateways, and the settling after it. Needs root, iproute2, strongSwan and stress-ng (scripts/setup.sh). Figures on stdout, progress on stderr; last line: stability cold_converge_ms=A cold_flaps=B quiet_flaps=C fleet_cpu_pct=D noisy_flaps=E noisy_kill_p99_ms=F split_brain=G recover_ms=H",
    {
      "quiet-s": { type: "string", default: "60", help: "seconds of the quiet window" },
      "noisy-s": { type: "string", default: "60", help: "seconds of stress-ng --cpu 4" },
      kills: { type: "string", default: "10", help: "SIGKILLs of active gateways during the hog" },
      "recover-s": { type: "string", default: "15", help: "seconds of watching the terms after the hog stops" },
      topology: { type: "string", default: join(REPO_ROOT, "topology.json"), help: "topology file" },
      "no-drop-caches": { type: "boolean", default: false, help: "skip dropping the page cache before the cold start" },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const quietMs = integerFlag(flags["quiet-s"]!, "--quiet-s", 1) * 1000;
  const noisyMs = integerFlag(flags["noisy-s"]!, "--noisy-s", 1) * 1000;
  const kills = integerFlag(flags.kills!, "--kills", 0);
  const recoverMs = integerFlag(flags["recover-s"]!, "--recover-s", 1) * 1000;
  if (process.getuid?.() !== 0)
    throw new PrerequisiteError(
      "bench:stability needs root (the fleet in network namespaces, tunnel mode): run it as root; scripts/setup.sh installs what it uses",
    );
  if (spawnSync("stress-ng", ["--version"]).error)
    throw new MissingDependencyError("stress-ng", ["stress-ng"], "bench:stability loads the CPU with stress-ng");
  checkStrongSwanInstalled({ libipsec: !kernelHasEsp() });

  const topology = loadTopology(flags.topology!);
  const multi = new Set(
    topology.gateways
      .filter((g) => new Set(g.spec.endpoints.map((e) => e.nodeName)).size >= 2)
      .map((g) => g.metadata.name),
  );
  const runDir = mkdtempSync(join(tmpdir(), "raven-bench-stability-"));
  const fleet = new Fleet(topology, {
    runDir,
    hubPort: 0,
    restartDelayMs: 1_000,
    tunnel: true,
    tunnelDriver: "strongswan",
    progress: (l) => out.progress(`fleet: ${l.trim()}`),
  });
  let observer: FleetObserver | null = null;
  let reference: ChildProcess | null = null;
  let hog: ChildProcess | null = null;
  let failed = false;
  const stopAll = once(async () => {
    stopCpuHog(hog);
    reference?.kill();
    await observer?.stop().catch(() => undefined);
    await fleet.stop();
    if (failed || process.exitCode)
      out.progress(`bench:stability failed or was interrupted; the fleet's logs are kept in ${join(runDir, "logs")}`);
    else if (process.env.RAVEN_KEEP_RUN_DIR) out.progress(`run directory kept: ${runDir}`);
    else rmSync(runDir, { recursive: true, force: true });
  });
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.once(signal, () => {
      failed = true;
      void stopAll().finally(() => process.exit(code));
    });
  }

  try {
    // 1. Cold start.
    if (!flags["no-drop-caches"]) {
      spawnSync("sync");
      writeFileSync("/proc/sys/vm/drop_caches", "3\n");
      out.progress("page cache dropped");
    }
    const launchedAt = performance.now();
    await fleet.start();
    const coldConvergeMs = performance.now() - launchedAt;
    observer = await FleetObserver.start(fleet.hubUrl);
    const nc = await fleet.connect();
    const status = async (): Promise<StatusReply> => {
      const st = await fleet.status(nc, 2_000);
      if (!st) throw new Error("no status from the coordinator");
      return st;
    };
    out.figure(`cold: every domain elected ${(coldConvergeMs / 1000).toFixed(1)} s after launch`);
    await sleep(SETTLE_MS);
    const coldTerms = (await status()).domains.map((d) => [d.gateway, d.term] as const);
    const coldFlaps = coldTerms.reduce((n, [, term]) => n + Math.max(0, term - 1), 0);
    out.figure(
      `cold: terms ${SETTLE_MS / 1000} s later: ${coldTerms.map(([g, t]) => `${g}=${t}`).join(" ")} (${coldFlaps} change(s) after the first elections)`,
    );

    // 2. Quiet.
    out.progress(`quiet window: ${quietMs / 1000} s`);
    const restartsBefore = [...fleet.procs.values()].reduce((n, p) => n + p.restarts, 0);
    // The reference, in the same window: an empty Node.js process woken 100 times a second. What an idle
    // fleet costs is wake-ups, and their price moves with the host (0.85-1.10 % for this one, hours apart).
    reference = spawn(process.execPath, ["-e", "setInterval(() => {}, 10)"], { stdio: "ignore" });
    // Term changes are seen in the assignments; the heartbeat copy the observer takes is for split brain
    // under the kills, and would load the hub here with what the fleet does not cost.
    observer.followHeartbeats(false);
    const referencePid = reference.pid ?? -1;
    await sleep(1_000); // started and idle before the window opens
    const quietFrom = performance.now();
    const snapBefore = snapshot();
    await sleep(quietMs);
    const snapAfter = snapshot();
    const quietSeconds = (performance.now() - quietFrom) / 1000;
    reference.kill();
    observer.followHeartbeats(true);
    const referencePct = pidCpuPct(snapBefore, snapAfter, referencePid, quietSeconds);
    const quietChanges = changesIn(observer, quietFrom);
    const fleetCpuPct = treeCpuPct(snapBefore, snapAfter, process.pid, quietSeconds) - referencePct;
    const restarts = [...fleet.procs.values()].reduce((n, p) => n + p.restarts, 0) - restartsBefore;
    out.figure(
      `quiet: ${quietChanges.length} term change(s)${quietChanges.map((c) => ` ${c.gateway}`).join("")}; ${restarts} process restart(s)`,
    );
    out.figure(
      `quiet: reference, an empty Node.js process woken 100 times a second: ${figure(referencePct, 2)} % of one core (the price of 100 wake-ups a second on this host now)`,
    );
    out.figure(
      `quiet: fleet CPU ${figure(fleetCpuPct, 1)} % of one core (${figure(fleetCpuPct / referencePct, 1)} x the reference), ${descendants(snapAfter, process.pid).size - 1} processes:`,
    );
    const kinds = [...cpuByKind(fleet, snapBefore, snapAfter, quietSeconds, referencePid)].sort(
      (a, b) => b[1].pct - a[1].pct,
    );
    for (const [kind, g] of kinds)
      out.figure(`  ${kind.padEnd(34)} ${g.pct.toFixed(1).padStart(5)} %  (${g.n} x ${(g.pct / g.n).toFixed(2)} %)`);

    // 3. Loaded, with kills.
    out.progress(`loaded window: ${noisyMs / 1000} s of stress-ng --cpu 4 at nice ${CONTROL_NICE}, ${kills} kill(s)`);
    hog = startCpuHog((err) => out.progress(`stress-ng: ${err.message}`));
    const noisyFrom = performance.now();
    const killLog: Kill[] = [];
    const killMs: number[] = [];
    let next = 0;
    for (let i = 0; i < kills; i++) {
      // Spread over the window, leaving its last sixth without kills.
      await sleep(Math.max(0, noisyFrom + ((i + 0.5) * noisyMs * 5) / 6 / kills - performance.now()));
      let st = await status();
      const ready = () =>
        st.domains.filter((d) => multi.has(d.gateway) && d.active.length > 0 && d.candidates.every((c) => c.healthy));
      while (ready().length === 0) {
        await sleep(100);
        st = await status();
      }
      const choices = ready();
      const domain = choices[next++ % choices.length]!;
      const before = observer.latest.get(domain.gateway);
      const victim = before?.active[0]?.nodeName;
      if (!before || !victim) continue;
      const at = performance.now();
      fleet.kill(`gateway-${victim}`, "SIGKILL");
      killLog.push({ gateway: domain.gateway, at });
      try {
        const after = await observer.waitFor(
          (a) =>
            a.gateway === domain.gateway &&
            a.term > before.term &&
            a.active.length > 0 &&
            a.active.every((e) => e.nodeName !== victim),
          FAILOVER_TIMEOUT_MS,
          `a new active for ${domain.gateway}`,
        );
        killMs.push(after.seenAt - at);
        out.figure(
          `kill ${i + 1}/${kills}: ${domain.gateway} ${victim} -> ${after.active[0]!.nodeName} term ${after.term} named in ${(after.seenAt - at).toFixed(0)} ms`,
        );
      } catch (err) {
        killMs.push(Infinity);
        out.figure(`kill ${i + 1}/${kills}: ${domain.gateway} ${victim}: ${(err as Error).message}`);
      }
    }
    await sleep(Math.max(0, noisyFrom + noisyMs - performance.now()));
    stopCpuHog(hog);
    hog = null;
    const noisyTo = performance.now();
    const noisy = unexplainedChanges(changesIn(observer, noisyFrom, noisyTo), killLog);
    out.figure(
      `loaded: ${noisy.length} term change(s) no kill explains${noisy.map((c) => ` ${c.gateway}@+${((c.at - noisyFrom) / 1000).toFixed(1)}s`).join("")}`,
    );

    // 4. Recovery.
    await sleep(recoverMs);
    const recoverFigure = settledAfter(changesIn(observer, noisyTo), noisyTo);
    const splitBrain = observer.violations(replicasIn(topology.gateways)).length;
    await nc.close();
    const figures = {
      coldConvergeMs,
      coldFlaps,
      quietFlaps: quietChanges.length,
      fleetCpuPct,
      noisyFlaps: noisy.length,
      noisyKillMs: killMs,
      splitBrain,
      recoverMs: recoverFigure,
    };
    out.figure(`observer: ${observer.heartbeats} heartbeats, ${observer.claims.length} active claims`);
    for (const g of goals(figures)) out.figure(`goal ${g}`);
    out.figure(stabilityLine(figures));
    if (killMs.some((ms) => !Number.isFinite(ms))) process.exitCode = 1;
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await stopAll();
  }
});
