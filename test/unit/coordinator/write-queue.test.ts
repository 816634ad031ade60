// WriteQueue: marks between writes coalesce into one write; a key is written at most once per interval; the
// token bucket bounds writes over all keys; failures are retried with a doubling backoff.
import { describe, expect, it } from "vitest";
import { WriteQueue } from "../../../services/coordinator/kube/write-queue";
import { ManualClock } from "../../../shared/clock";

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

function setup(overrides: Partial<{ qps: number; burst: number; fail: (key: string, n: number) => boolean }> = {}) {
  const clock = new ManualClock();
  const writes: { key: string; at: number }[] = [];
  const attempts = new Map<string, number>();
  const errors: number[] = [];
  const queue = new WriteQueue({
    minIntervalMs: 1000,
    qps: overrides.qps ?? 100,
    burst: overrides.burst ?? 100,
    backoffMs: 500,
    maxBackoffMs: 4000,
    clock,
    write: async (key) => {
      const n = (attempts.get(key) ?? 0) + 1;
      attempts.set(key, n);
      writes.push({ key, at: clock.now() });
      if (overrides.fail?.(key, n)) throw new Error("409 Conflict");
    },
    onError: (_key, _err, attempt) => errors.push(attempt),
  });
  const advance = async (ms: number) => {
    for (let t = 0; t < ms; t += 10) {
      clock.advance(10);
      await settle();
    }
  };
  return { clock, queue, writes, errors, advance };
}

describe("WriteQueue", () => {
  it("writes a marked key once however often it was marked, and again no sooner than the interval", async () => {
    const { queue, writes, advance } = setup();
    for (let i = 0; i < 50; i++) queue.mark("gw-a");
    await advance(100);
    expect(writes.map((w) => w.key)).toEqual(["gw-a"]);
    for (let i = 0; i < 15; i++) {
      queue.mark("gw-a"); // a domain flapping 10 times a second for 1.5 s
      await advance(100);
    }
    await advance(2000);
    expect(writes).toHaveLength(3);
    expect(writes[1]!.at - writes[0]!.at).toBeGreaterThanOrEqual(1000);
    expect(writes[2]!.at - writes[1]!.at).toBeGreaterThanOrEqual(1000);
    expect(queue.pending).toBe(0);
  });

  it("bounds writes over all keys by the token bucket", async () => {
    const { queue, writes, advance } = setup({ qps: 10, burst: 5 });
    for (let i = 0; i < 40; i++) queue.mark(`gw-${i}`);
    await advance(20);
    expect(writes).toHaveLength(5);
    await advance(1000);
    // 5 of the burst, then 10 a second.
    expect(writes.length).toBeGreaterThanOrEqual(14);
    expect(writes.length).toBeLessThanOrEqual(16);
    await advance(3000);
    expect(new Set(writes.map((w) => w.key)).size).toBe(40);
  });

  it("retries a failed write with a doubling backoff until it succeeds", async () => {
    const { queue, writes, errors, advance } = setup({ fail: (_k, n) => n <= 3 });
    queue.mark("gw-a");
    await advance(10_000);
    expect(writes).toHaveLength(4);
    expect(errors).toEqual([1, 2, 3]);
    const gaps = writes.slice(1).map((w, i) => w.at - writes[i]!.at);
    // Never sooner than the interval; the backoff (500, 1000, 2000) takes over once it is longer.
    expect(gaps[0]).toBeGreaterThanOrEqual(1000);
    expect(gaps[1]).toBeGreaterThanOrEqual(1000);
    expect(gaps[2]).toBeGreaterThanOrEqual(2000);
    expect(queue.pending).toBe(0);
  });

  it("writes nothing after stop", async () => {
    const { queue, writes, advance } = setup();
    queue.stop();
    queue.mark("gw-a");
    await advance(2000);
    expect(writes).toHaveLength(0);
  });
});
