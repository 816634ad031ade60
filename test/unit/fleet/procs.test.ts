import { describe, expect, it } from "vitest";
import { MAX_RESTART_DELAY_MS, niced, restartDelay } from "../../../services/fleet/procs";

describe("restartDelay", () => {
  it("waits the base delay for a first crash, give or take the jitter", () => {
    expect(restartDelay(1_000, 1, 0)).toBe(800);
    expect(restartDelay(1_000, 1, 0.5)).toBe(1_000);
    expect(restartDelay(1_000, 1, 0.999)).toBeLessThanOrEqual(1_200);
  });

  it("doubles per crash in a row and stops at the cap", () => {
    expect([1, 2, 3, 4].map((n) => restartDelay(1_000, n, 0.5))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(restartDelay(1_000, 6, 0.5)).toBe(MAX_RESTART_DELAY_MS);
    expect(restartDelay(1_000, 1_000, 0.999)).toBeLessThanOrEqual(MAX_RESTART_DELAY_MS * 1.2);
  });

  it("spreads processes that crashed together", () => {
    const delays = new Set([0, 0.25, 0.5, 0.75].map((r) => restartDelay(1_000, 1, r)));
    expect(delays.size).toBe(4);
  });
});

describe("niced", () => {
  it("prefixes nice for a value it may set", () => {
    expect(niced("node", ["a.js"], -5, true)).toEqual({ command: "nice", args: ["-n", "-5", "node", "a.js"] });
    expect(niced("node", ["a.js"], 5, false)).toEqual({ command: "nice", args: ["-n", "5", "node", "a.js"] });
  });

  it("leaves the command alone when no value is asked for, or a negative one is not allowed", () => {
    expect(niced("node", ["a.js"], undefined, true)).toEqual({ command: "node", args: ["a.js"] });
    expect(niced("node", ["a.js"], -5, false)).toEqual({ command: "node", args: ["a.js"] });
  });
});
