import { describe, expect, it } from "vitest";
import {
  judgeSilence,
  MAX_DEFER_FACTOR,
  SATURATED,
  STALL_MS,
  type DetectorInput,
} from "../../../services/coordinator/detector";

const DEAD = 300;

function input(over: Partial<DetectorInput>): DetectorInput {
  return { deadAfterMs: DEAD, candidates: [], sweepLateMs: 0, loopUtilisation: 0.1, deferredForMs: 0, ...over };
}

describe("judgeSilence", () => {
  it("declares nobody while every candidate is heard within deadAfterMs", () => {
    const v = judgeSilence(
      input({
        candidates: [
          { node: "a", domain: "x", silentMs: 100, deadAfterMs: DEAD },
          { node: "b", domain: "y", silentMs: DEAD - 1, deadAfterMs: DEAD },
        ],
      }),
    );
    expect(v).toEqual({ kind: "judge", dead: [] });
  });

  it("declares a lone silent candidate dead once it has been silent for deadAfterMs", () => {
    const v = judgeSilence(
      input({
        candidates: [
          { node: "a", domain: "x", silentMs: DEAD, deadAfterMs: DEAD },
          { node: "b", domain: "y", silentMs: 20, deadAfterMs: DEAD },
        ],
      }),
    );
    expect(v).toEqual({ kind: "judge", dead: ["a"] });
  });

  it("declares several silent candidates of one domain dead together (a domain cut off is a real failure)", () => {
    const v = judgeSilence(
      input({
        candidates: [
          { node: "a1", domain: "x", silentMs: DEAD + 50, deadAfterMs: DEAD },
          { node: "a2", domain: "x", silentMs: DEAD + 40, deadAfterMs: DEAD },
          { node: "b", domain: "y", silentMs: 10, deadAfterMs: DEAD },
        ],
      }),
    );
    expect(v).toEqual({ kind: "judge", dead: ["a1", "a2"] });
  });

  it("defers when the sweep itself ran late: the loop stalled and has not read what arrived", () => {
    const v = judgeSilence(
      input({
        sweepLateMs: STALL_MS + 1,
        candidates: [{ node: "a", domain: "x", silentMs: DEAD * 3, deadAfterMs: DEAD }],
      }),
    );
    expect(v).toEqual({ kind: "defer", reason: "stall", suspects: ["a"] });
  });

  it("defers while the event loop was saturated", () => {
    const v = judgeSilence(
      input({
        loopUtilisation: SATURATED + 0.01,
        candidates: [{ node: "a", domain: "x", silentMs: DEAD * 3, deadAfterMs: DEAD }],
      }),
    );
    expect(v).toEqual({ kind: "defer", reason: "saturated", suspects: ["a"] });
  });

  it("defers a silence shared by two domains, then judges it after MAX_DEFER_FACTOR × deadAfterMs", () => {
    const candidates = [
      { node: "a", domain: "x", silentMs: DEAD + 10, deadAfterMs: DEAD },
      { node: "b", domain: "y", silentMs: DEAD / 2, deadAfterMs: DEAD },
      { node: "c", domain: "z", silentMs: 5, deadAfterMs: DEAD },
    ];
    expect(judgeSilence(input({ candidates, deferredForMs: 0 }))).toEqual({
      kind: "defer",
      reason: "correlated",
      suspects: ["a"],
    });
    expect(judgeSilence(input({ candidates, deferredForMs: MAX_DEFER_FACTOR * DEAD - 1 }))).toMatchObject({
      kind: "defer",
    });
    expect(judgeSilence(input({ candidates, deferredForMs: MAX_DEFER_FACTOR * DEAD }))).toEqual({
      kind: "judge",
      dead: ["a"],
    });
  });

  it("judges each candidate by its own window: a standby that announced a longer period is not late yet", () => {
    const standby = { node: "s", domain: "x", silentMs: 2 * DEAD, deadAfterMs: 3 * DEAD };
    expect(judgeSilence(input({ candidates: [standby] }))).toEqual({ kind: "judge", dead: [] });
    expect(judgeSilence(input({ candidates: [{ ...standby, silentMs: 3 * DEAD }] }))).toEqual({
      kind: "judge",
      dead: ["s"],
    });
    // Half its own window is "late" for the correlation rule: 1.2 × DEAD of a 3 × DEAD window is not.
    const other = { node: "a", domain: "y", silentMs: DEAD, deadAfterMs: DEAD };
    expect(judgeSilence(input({ candidates: [other, { ...standby, silentMs: 1.2 * DEAD }] }))).toEqual({
      kind: "judge",
      dead: ["a"],
    });
    expect(judgeSilence(input({ candidates: [other, { ...standby, silentMs: 1.5 * DEAD }] }))).toMatchObject({
      kind: "defer",
      reason: "correlated",
    });
  });

  it("never declares a candidate dead before deadAfterMs, whatever the other inputs (the fencing precondition)", () => {
    for (const late of [0, STALL_MS + 1])
      for (const elu of [0, 1])
        for (const deferred of [0, 10 * DEAD]) {
          const v = judgeSilence(
            input({
              sweepLateMs: late,
              loopUtilisation: elu,
              deferredForMs: deferred,
              candidates: [
                { node: "a", domain: "x", silentMs: DEAD - 1, deadAfterMs: DEAD },
                { node: "b", domain: "y", silentMs: DEAD - 1, deadAfterMs: DEAD },
              ],
            }),
          );
          expect(v.kind === "judge" ? v.dead : []).toEqual([]);
        }
  });
});
