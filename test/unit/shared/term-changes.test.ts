import { describe, expect, it } from "vitest";
import { HealthTracker } from "../../../services/coordinator/health";
import { buildStatus } from "../../../services/coordinator/status";
import {
  MAX_TERM_CHANGES_PER_UNIT,
  TERM_CHANGE_WINDOW_MS,
  TermChangeWindow,
} from "../../../services/coordinator/term-changes";
import type { Unit } from "../../../shared/domains";

const MIN = TERM_CHANGE_WINDOW_MS;

describe("TermChangeWindow", () => {
  it("is one minute wide", () => {
    expect(TERM_CHANGE_WINDOW_MS).toBe(60_000);
  });

  it("counts nothing for a unit it never saw", () => {
    expect(new TermChangeWindow().count("gw-a", 1_000)).toBe(0);
  });

  it("counts each unit's raises within the last window, apart", () => {
    const w = new TermChangeWindow();
    w.record("gw-a", 1_000);
    w.record("gw-a", 2_000);
    w.record("gw-b", 2_500);
    w.record("gw-a", 3_000);
    expect(w.count("gw-a", 3_000)).toBe(3);
    expect(w.count("gw-b", 3_000)).toBe(1);
  });

  it("slides: a raise counts while it is less than a window old, and not at exactly a window", () => {
    const w = new TermChangeWindow();
    w.record("gw-a", 1_000);
    w.record("gw-a", 31_000);
    expect(w.count("gw-a", 1_000 + MIN - 1)).toBe(2);
    expect(w.count("gw-a", 1_000 + MIN)).toBe(1);
    expect(w.count("gw-a", 31_000 + MIN - 1)).toBe(1);
    expect(w.count("gw-a", 31_000 + MIN)).toBe(0);
  });

  it("forgets a unit whose raises all left the window when it is counted", () => {
    const w = new TermChangeWindow();
    w.record("gw-a", 0);
    expect(w.units).toBe(1);
    expect(w.count("gw-a", MIN)).toBe(0);
    expect(w.units).toBe(0);
  });

  it("sweeps units nobody counts any more (removed from the inventory) on a later record", () => {
    const w = new TermChangeWindow();
    for (let i = 0; i < 100; i++) w.record(`gone-${i}`, i);
    expect(w.units).toBe(100);
    // Within a window of the last sweep: no sweep yet, the idle units stay.
    w.record("gw-a", MIN - 1);
    expect(w.units).toBe(101);
    // A window after the last sweep (at 0): every unit is checked, and the idle ones go.
    w.record("gw-a", 2 * MIN);
    expect(w.units).toBe(1);
    expect(w.count("gw-a", 2 * MIN)).toBe(1);
  });

  it("keeps at most maxPerUnit raises per unit, the newest", () => {
    const w = new TermChangeWindow(MIN, 3);
    for (let t = 0; t < 10; t++) w.record("gw-a", t);
    expect(w.count("gw-a", 10)).toBe(3);
    // The three kept are the newest (7, 8, 9): they leave the window one by one.
    expect(w.count("gw-a", 7 + MIN)).toBe(2);
    expect(w.count("gw-a", 9 + MIN)).toBe(0);
    expect(MAX_TERM_CHANGES_PER_UNIT).toBeGreaterThanOrEqual(100);
  });

  it("stays bounded under a long flap storm across many units", () => {
    const w = new TermChangeWindow(MIN, 50);
    let t = 0;
    for (let i = 0; i < 20_000; i++) w.record(`gw-${i % 7}`, (t += 100));
    for (let u = 0; u < 7; u++) expect(w.count(`gw-${u}`, t)).toBeLessThanOrEqual(50);
    expect(w.units).toBe(7);
  });
});

describe("buildStatus termChangesLastMinute", () => {
  const unit = (key: string, domain: string): Unit => ({
    key,
    name: key,
    solo: false,
    domain,
    nodes: [],
    candidates: [],
  });

  it("fills each domain row from the window, by unit key, at the status's now", () => {
    const w = new TermChangeWindow();
    w.record("gw-a", 1_000);
    w.record("gw-a", 50_000);
    w.record("gw-a", 61_000);
    const st = buildStatus({
      coordinator: "coordinator-0",
      activeSince: 0,
      units: [unit("gw-a", "factory-a"), unit("gw-b", "shop-b")],
      record: () => null,
      nodeIP: () => "",
      tracker: new HealthTracker({ deadAfterMs: 300, heartbeatMs: 100, riseCount: 2, nodeDeadAfterMs: 3_000 }, 0),
      termChanges: w,
      now: 61_000,
      deadAfterMs: 300,
    });
    expect(st.domains.map((d) => [d.domain, d.termChangesLastMinute])).toEqual([
      ["factory-a", 2],
      ["shop-b", 0],
    ]);
  });
});
