import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { LeaseCell } from "../../../services/gateway-actor/proxy/lease-cell";

describe("LeaseCell", () => {
  it("runs for the time it was given, and not at all for none", async () => {
    const cell = new LeaseCell();
    expect(cell.running()).toBe(false); // a new cell holds no lease
    cell.set(60_000);
    expect(cell.running()).toBe(true);
    cell.set(0);
    expect(cell.running()).toBe(false);
    cell.set(-5);
    expect(cell.running()).toBe(false);
    cell.set(Number.NaN);
    expect(cell.running()).toBe(false);
    cell.set(2);
    await new Promise((r) => setTimeout(r, 10));
    expect(cell.running()).toBe(false); // ran out without anyone writing
  });

  it("is read by another thread from the same memory, on the clock both threads share", async () => {
    const cell = new LeaseCell();
    cell.set(60_000);
    // The worker reads the cell as the proxy thread does (µs on process.hrtime), without importing this module.
    const read = () =>
      new Promise<boolean>((resolve, reject) => {
        const w = new Worker(
          `const { workerData, parentPort } = require("node:worker_threads");
           const end = Atomics.load(new BigInt64Array(workerData), 0);
           parentPort.postMessage(process.hrtime.bigint() / 1000n < end);`,
          { eval: true, workerData: cell.buffer },
        );
        w.once("message", (v: boolean) => void w.terminate().then(() => resolve(v)));
        w.once("error", reject);
      });
    expect(await read()).toBe(true);
    cell.set(0);
    expect(await read()).toBe(false);
  });
});
