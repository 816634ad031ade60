import { describe, expect, it } from "vitest";
import { ManualClock, systemClock } from "../../../shared/clock";

describe("ManualClock", () => {
  it("starts at 0 and moves only when advanced; wallMs follows now", () => {
    const c = new ManualClock(1_000_000);
    expect(c.now()).toBe(0);
    expect(c.wallMs()).toBe(1_000_000);
    c.advance(250);
    expect(c.now()).toBe(250);
    expect(c.wallMs()).toBe(1_000_250);
    expect(new ManualClock().wallMs()).toBe(1_700_000_000_000);
  });

  it("fires timers in deadline order, not creation order, each at its own deadline", () => {
    const c = new ManualClock();
    const fired: [string, number][] = [];
    c.setTimeout(() => fired.push(["c", c.now()]), 300);
    c.setTimeout(() => fired.push(["a", c.now()]), 100);
    c.setTimeout(() => fired.push(["b", c.now()]), 200);
    c.setTimeout(() => fired.push(["late", c.now()]), 1_000);
    c.advance(500);
    expect(fired).toEqual([
      ["a", 100],
      ["b", 200],
      ["c", 300],
    ]);
    expect(c.now()).toBe(500);
    c.advance(499);
    expect(fired).toHaveLength(3);
    c.advance(1);
    expect(fired.at(-1)).toEqual(["late", 1_000]);
  });

  it("fires timers with the same deadline in creation order", () => {
    const c = new ManualClock();
    const fired: number[] = [];
    for (let i = 0; i < 5; i++) c.setTimeout(() => fired.push(i), 50);
    c.advance(50);
    expect(fired).toEqual([0, 1, 2, 3, 4]);
  });

  it("a timeout fires once; a zero delay fires on advance(0)", () => {
    const c = new ManualClock();
    let n = 0;
    c.setTimeout(() => n++, 10);
    c.advance(100);
    c.advance(100);
    expect(n).toBe(1);
    c.setTimeout(() => n++, 0);
    expect(n).toBe(1);
    c.advance(0);
    expect(n).toBe(2);
  });

  it("intervals repeat at their period within one advance and across advances", () => {
    const c = new ManualClock();
    const at: number[] = [];
    c.setInterval(() => at.push(c.now()), 100);
    c.advance(350);
    expect(at).toEqual([100, 200, 300]);
    c.advance(50);
    expect(at).toEqual([100, 200, 300, 400]);
    c.advance(1_000);
    expect(at).toHaveLength(14);
  });

  it("interleaves intervals and timeouts by deadline", () => {
    const c = new ManualClock();
    const log: string[] = [];
    c.setInterval(() => log.push(`tick@${c.now()}`), 40);
    c.setTimeout(() => log.push(`once@${c.now()}`), 90);
    c.advance(130);
    expect(log).toEqual(["tick@40", "tick@80", "once@90", "tick@120"]);
  });

  it("clearTimeout and clearInterval stop a timer, also from inside a callback", () => {
    const c = new ManualClock();
    let timeouts = 0;
    let ticks = 0;
    const t = c.setTimeout(() => timeouts++, 10);
    c.clearTimeout(t);
    const i = c.setInterval(() => {
      ticks++;
      if (ticks === 3) c.clearInterval(i);
    }, 10);
    c.advance(1_000);
    expect(timeouts).toBe(0);
    expect(ticks).toBe(3);
    // a timer can cancel another that is due in the same advance
    let victim = 0;
    const v = c.setTimeout(() => victim++, 20);
    c.setTimeout(() => c.clearTimeout(v), 10);
    c.advance(50);
    expect(victim).toBe(0);
    // clearing an unknown or already fired handle is harmless
    c.clearTimeout(t);
    c.clearInterval({ id: 9_999 });
  });

  it("a timer set from a callback fires in the same advance when it falls due", () => {
    const c = new ManualClock();
    const at: number[] = [];
    c.setTimeout(() => {
      at.push(c.now());
      c.setTimeout(() => at.push(c.now()), 30);
      c.setTimeout(() => at.push(c.now()), 500);
    }, 20);
    c.advance(100);
    expect(at).toEqual([20, 50]);
    c.advance(419);
    expect(at).toEqual([20, 50]);
    c.advance(1);
    expect(at).toEqual([20, 50, 520]);
  });

  it("returns distinct handles", () => {
    const c = new ManualClock();
    const ids = new Set([c.setTimeout(() => {}, 1).id, c.setInterval(() => {}, 1).id, c.setTimeout(() => {}, 1).id]);
    expect(ids.size).toBe(3);
  });

  // ManualClock.advance sets `this.t = timer.at`; a timer set with a negative delay (a deadline already
  // passed, e.g. `clock.setTimeout(fn, deadline - clock.now())`) has `at` in the past, so now() goes
  // backwards inside its callback. Real timers clamp the delay to >= 1 ms. Fix: clamp `ms` to >= 0 in
  // setTimeout/setInterval (or `this.t = Math.max(this.t, timer.at)`).
  it("never moves backwards, even for a timer set with a negative delay", () => {
    const c = new ManualClock();
    c.advance(100);
    let seen = -1;
    c.setTimeout(() => {
      seen = c.now();
    }, -5);
    c.advance(10);
    expect(seen).toBeGreaterThanOrEqual(100);
  });
});

describe("systemClock", () => {
  it("has a monotonic now() and an epoch wallMs()", () => {
    const a = systemClock.now();
    const b = systemClock.now();
    expect(b).toBeGreaterThanOrEqual(a);
    expect(Math.abs(systemClock.wallMs() - Date.now())).toBeLessThan(1_000);
  });

  it("runs timeouts and intervals and clears them", async () => {
    const fired: string[] = [];
    const cancelled = systemClock.setTimeout(() => fired.push("cancelled"), 5);
    systemClock.clearTimeout(cancelled);
    let ticks = 0;
    await new Promise<void>((resolve) => {
      const interval = systemClock.setInterval(() => {
        ticks++;
        if (ticks === 2) {
          systemClock.clearInterval(interval);
          resolve();
        }
      }, 5);
    });
    // By now the cancelled timeout was long due; give a cleared interval room to misfire too.
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 30));
    expect(fired).toEqual([]);
    expect(ticks).toBe(2);
  });
});
