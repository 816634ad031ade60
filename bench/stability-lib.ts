// The pure part of bench:stability: which term changes a kill explains, when the terms stopped changing,
// the CPU of a process tree between two /proc snapshots, and the exact last line. No I/O, no clock: times are
// numbers on one monotonic clock (performance.now() of the benchmark), snapshots are plain maps.
import { percentile } from "./proc-stats";
import { figure } from "./tunnel-lib";

/** A term change as the observer saw it: the Gateway and when. */
export type TermChange = Readonly<{ gateway: string; at: number }>;
/**
 * The term changes in an observer's history (every assignment whose term differs from the one before it,
 * Gateway by Gateway): the first assignment heard of a Gateway is not a change.
 */
export function termChanges(
  history: readonly Readonly<{ gateway: string; term: number; seenAt: number }>[],
): TermChange[] {
  const last = new Map<string, number>();
  const out: TermChange[] = [];
  for (const a of history) {
    const prev = last.get(a.gateway);
    if (prev !== undefined && prev !== a.term) out.push({ gateway: a.gateway, at: a.seenAt });
    last.set(a.gateway, a.term);
  }
  return out;
}

/** A SIGKILL of a Gateway's active candidate. */
export type Kill = Readonly<{ gateway: string; at: number }>;

/**
 * Term changes that no kill caused. Each kill explains the first change of its Gateway after it (the
 * failover it forced); every other change in the window is a flap: a term raised on a busy host with nobody
 * dead, or a second election after a kill.
 */
export function unexplainedChanges(changes: readonly TermChange[], kills: readonly Kill[]): TermChange[] {
  const pending = [...kills].sort((a, b) => a.at - b.at);
  const out: TermChange[] = [];
  for (const c of [...changes].sort((a, b) => a.at - b.at)) {
    const i = pending.findIndex((k) => k.gateway === c.gateway && k.at <= c.at);
    if (i >= 0) pending.splice(i, 1);
    else out.push(c);
  }
  return out;
}

/** Ms from `from` to the last term change in [from, ∞); 0 when there was none. */
export function settledAfter(changes: readonly TermChange[], from: number): number {
  let last = from;
  for (const c of changes) if (c.at >= from && c.at > last) last = c.at;
  return last - from;
}

/** One process in a /proc snapshot: its parent and its CPU time so far (utime + stime, clock ticks). */
export type ProcSample = Readonly<{ ppid: number; ticks: number }>;

/** Every pid in `snap` that descends from `root` (root excluded). */
export function descendants(snap: ReadonlyMap<number, ProcSample>, root: number): Set<number> {
  const children = new Map<number, number[]>();
  for (const [pid, p] of snap) {
    const list = children.get(p.ppid);
    if (list) list.push(pid);
    else children.set(p.ppid, [pid]);
  }
  const out = new Set<number>();
  const stack = [root];
  while (stack.length) {
    for (const c of children.get(stack.pop()!) ?? []) {
      if (c === root || out.has(c)) continue;
      out.add(c);
      stack.push(c);
    }
  }
  return out;
}

/**
 * CPU of the tree under `root` (root excluded) between two snapshots, in % of one core: for every process
 * alive at the end, its ticks since the first snapshot (all of them when it started in between). A process
 * that exited in between is not counted (none should, in a quiet window; the caller reports restarts).
 */
export function treeCpuPct(
  before: ReadonlyMap<number, ProcSample>,
  after: ReadonlyMap<number, ProcSample>,
  root: number,
  seconds: number,
  clockTicks = 100,
): number {
  let pct = 0;
  for (const pid of descendants(after, root)) pct += pidCpuPct(before, after, pid, seconds, clockTicks);
  return pct;
}

/** CPU of one process alive at the end between two snapshots, in % of one core (as treeCpuPct counts it). */
export function pidCpuPct(
  before: ReadonlyMap<number, ProcSample>,
  after: ReadonlyMap<number, ProcSample>,
  pid: number,
  seconds: number,
  clockTicks = 100,
): number {
  return (((after.get(pid)?.ticks ?? 0) - (before.get(pid)?.ticks ?? 0)) / clockTicks / seconds) * 100;
}

export type StabilityFigures = Readonly<{
  coldConvergeMs: number;
  coldFlaps: number;
  quietFlaps: number;
  fleetCpuPct: number;
  noisyFlaps: number;
  /** Failover times of the kills under load, ms (kill -> new active named). */
  noisyKillMs: readonly number[];
  splitBrain: number;
  recoverMs: number;
}>;

/** `stability cold_converge_ms=A cold_flaps=B quiet_flaps=C fleet_cpu_pct=D noisy_flaps=E noisy_kill_p99_ms=F split_brain=G recover_ms=H` */
export function stabilityLine(f: StabilityFigures): string {
  const p99 = percentile(
    [...f.noisyKillMs].sort((a, b) => a - b),
    99,
  );
  return (
    `stability cold_converge_ms=${figure(f.coldConvergeMs)} cold_flaps=${f.coldFlaps} quiet_flaps=${f.quietFlaps}` +
    ` fleet_cpu_pct=${figure(f.fleetCpuPct, 1)} noisy_flaps=${f.noisyFlaps} noisy_kill_p99_ms=${figure(p99)}` +
    ` split_brain=${f.splitBrain} recover_ms=${figure(f.recoverMs)}`
  );
}

/** The goals, each as "name goal: met|missed (value)". */
export function goals(f: StabilityFigures): string[] {
  const p99 = percentile(
    [...f.noisyKillMs].sort((a, b) => a - b),
    99,
  );
  const check = (name: string, ok: boolean, value: string) => `${name}: ${ok ? "met" : "missed"} (${value})`;
  return [
    check("cold convergence <= 20000 ms", f.coldConvergeMs <= 20_000, `${figure(f.coldConvergeMs)} ms`),
    check(
      "no term change after the first elections, when quiet or loaded",
      f.coldFlaps + f.quietFlaps + f.noisyFlaps === 0,
      `${f.coldFlaps}/${f.quietFlaps}/${f.noisyFlaps}`,
    ),
    check("fleet CPU <= 25 % of one core", f.fleetCpuPct <= 25, `${figure(f.fleetCpuPct, 1)} %`),
    f.noisyKillMs.length === 0
      ? "failover under load p99 < 1000 ms: not measured (no kills)"
      : check("failover under load p99 < 1000 ms", p99 < 1_000, `${figure(p99)} ms`),
    check("no split brain", f.splitBrain === 0, String(f.splitBrain)),
    check("terms settled <= 5000 ms after the hog", f.recoverMs <= 5_000, `${figure(f.recoverMs)} ms`),
  ];
}
