// bench:stability's pure part: term changes from an observer's history, which of them a kill explains, when
// the terms settled, a process tree's CPU between two /proc snapshots, and the exact last line.
import { describe, expect, it } from "vitest";
import {
  descendants,
  goals,
  settledAfter,
  stabilityLine,
  termChanges,
  treeCpuPct,
  unexplainedChanges,
  type ProcSample,
  type StabilityFigures,
} from "../../../bench/stability-lib";

describe("termChanges", () => {
  it("counts a change only after a Gateway's first assignment, Gateway by Gateway", () => {
    const history = [
      { gateway: "gw-a", term: 1, seenAt: 10 },
      { gateway: "gw-b", term: 3, seenAt: 11 },
      { gateway: "gw-a", term: 2, seenAt: 20 },
      { gateway: "gw-b", term: 4, seenAt: 30 },
      { gateway: "gw-a", term: 3, seenAt: 40 },
    ];
    expect(termChanges(history)).toEqual([
      { gateway: "gw-a", at: 20 },
      { gateway: "gw-b", at: 30 },
      { gateway: "gw-a", at: 40 },
    ]);
    expect(termChanges(history.slice(0, 2))).toEqual([]);
  });
});

describe("unexplainedChanges", () => {
  it("lets each kill explain its own Gateway's next change, and nothing else", () => {
    const changes = [
      { gateway: "gw-a", at: 150 }, // the failover of the kill at 100
      { gateway: "gw-a", at: 400 }, // a second election: a flap
      { gateway: "gw-b", at: 500 }, // nobody killed in gw-b: a flap
      { gateway: "gw-b", at: 650 }, // the kill at 600
    ];
    const kills = [
      { gateway: "gw-b", at: 600 },
      { gateway: "gw-a", at: 100 },
    ];
    expect(unexplainedChanges(changes, kills)).toEqual([
      { gateway: "gw-a", at: 400 },
      { gateway: "gw-b", at: 500 },
    ]);
  });

  it("does not let a kill explain a change before it", () => {
    expect(unexplainedChanges([{ gateway: "gw-a", at: 50 }], [{ gateway: "gw-a", at: 100 }])).toEqual([
      { gateway: "gw-a", at: 50 },
    ]);
  });
});

describe("settledAfter", () => {
  it("is the time from the start to the last change after it, 0 when none", () => {
    const changes = [
      { gateway: "gw-a", at: 90 },
      { gateway: "gw-a", at: 1300 },
      { gateway: "gw-b", at: 1100 },
    ];
    expect(settledAfter(changes, 100)).toBe(1200);
    expect(settledAfter(changes, 2000)).toBe(0);
  });
});

describe("process tree CPU", () => {
  const snap = (entries: Array<[number, number, number]>) =>
    new Map<number, ProcSample>(entries.map(([pid, ppid, ticks]) => [pid, { ppid, ticks }]));

  it("finds every descendant of the root, not the root, not strangers", () => {
    const s = snap([
      [10, 1, 0], // the root
      [11, 10, 0],
      [12, 11, 0],
      [13, 12, 0],
      [20, 1, 0], // a stranger
      [21, 20, 0],
    ]);
    expect([...descendants(s, 10)].sort()).toEqual([11, 12, 13]);
  });

  it("sums ticks since the first snapshot, whole lives of newcomers, in % of one core", () => {
    const before = snap([
      [10, 1, 500],
      [11, 10, 100],
      [12, 10, 40],
      [30, 1, 0],
    ]);
    const after = snap([
      [10, 1, 900], // the root itself: not counted
      [11, 10, 130], // +30
      [12, 10, 40], // +0
      [13, 11, 20], // started in between: +20
      [30, 1, 999], // a stranger
    ]);
    // 50 ticks of 100 Hz over 10 s = 0.5 s of CPU in 10 s = 5 % of one core.
    expect(treeCpuPct(before, after, 10, 10)).toBeCloseTo(5, 9);
  });
});

describe("stabilityLine and goals", () => {
  const met: StabilityFigures = {
    coldConvergeMs: 15_123.4,
    coldFlaps: 0,
    quietFlaps: 0,
    fleetCpuPct: 22.46,
    noisyFlaps: 0,
    noisyKillMs: [300, 320, 410, 280],
    splitBrain: 0,
    recoverMs: 0,
  };

  it("prints the issue's exact last line", () => {
    expect(stabilityLine(met)).toBe(
      "stability cold_converge_ms=15123 cold_flaps=0 quiet_flaps=0 fleet_cpu_pct=22.5 noisy_flaps=0 noisy_kill_p99_ms=410 split_brain=0 recover_ms=0",
    );
    expect(stabilityLine({ ...met, noisyKillMs: [300, Infinity] })).toContain(" noisy_kill_p99_ms=inf ");
  });

  it("names every goal met, and each one missed", () => {
    expect(goals(met).every((g) => g.includes(": met ("))).toBe(true);
    const missed = goals({
      ...met,
      coldConvergeMs: 25_000,
      quietFlaps: 2,
      fleetCpuPct: 38.3,
      noisyKillMs: [1200],
      splitBrain: 1,
      recoverMs: 6000,
    });
    expect(missed.filter((g) => g.includes(": missed ("))).toHaveLength(6);
    expect(goals({ ...met, noisyKillMs: [] }).some((g) => g.includes("not measured"))).toBe(true);
  });
});
