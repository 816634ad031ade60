// CPU and memory of a process from /proc, for benchmarks: CPU as percent of one core over a window.
import { readFileSync } from "node:fs";

const CLK_TCK = 100;

export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** Samples CPU percent of one core and the peak RSS of `pid` over `ms`. */
export async function sampleProcess(pid: number, ms: number): Promise<{ cpuPct: number; rssMb: number }> {
  const t0 = performance.now();
  const c0 = cpuTicks(pid);
  let peak = rssMb(pid);
  while (performance.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 500));
    peak = Math.max(peak, rssMb(pid));
  }
  const seconds = (performance.now() - t0) / 1000;
  return { cpuPct: ((cpuTicks(pid) - c0) / CLK_TCK / seconds) * 100, rssMb: peak };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}
