import { describe, expect, it } from "vitest";
import { pollUntil } from "../../../shared/poll";

describe("pollUntil", () => {
  it("returns the first value a check gives, treating a throw as not yet", async () => {
    let n = 0;
    const v = await pollUntil(
      "the third try",
      1_000,
      () => {
        n++;
        if (n === 1) throw new Error("not up");
        return n === 3 ? "up" : undefined;
      },
      1,
    );
    expect([v, n]).toEqual(["up", 3]);
  });

  it("times out naming what it waited for and the last error", async () => {
    await expect(
      pollUntil("the socket", 30, () => Promise.reject(new Error("ECONNREFUSED")), { everyMs: 5 }),
    ).rejects.toThrow(/^timed out after 30 ms waiting for the socket \(last error: ECONNREFUSED\)$/);
  });

  it("gives up at once when giveUp names a reason, and builds the caller's error", async () => {
    let checks = 0;
    const err = await pollUntil("the daemon's socket", 10_000, () => void checks++, {
      everyMs: 5,
      giveUp: () => (checks >= 2 ? "charon exited (code 1)" : null),
      error: (why) => new TypeError(why),
    }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect((err as Error).message).toBe("gave up waiting for the daemon's socket: charon exited (code 1)");
    expect(checks).toBe(2);
  });
});
