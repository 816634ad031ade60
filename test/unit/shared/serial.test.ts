// SerialTask: one run at a time; requests during a run coalesce into exactly one more; stop waits.
import { describe, expect, it } from "vitest";
import { SerialTask } from "../../../shared/serial";

describe("SerialTask", () => {
  it("runs one at a time, serves any number of requests made during a run with one more run, and stops after the run in flight", async () => {
    let runs = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    let release: () => void = () => undefined;
    const task = new SerialTask(async () => {
      runs++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((r) => (release = r));
      inFlight--;
    });
    task.request();
    task.request();
    task.request();
    expect(runs).toBe(1);
    release();
    await new Promise((r) => setImmediate(r));
    expect(runs).toBe(2);
    const stopped = task.stop();
    task.request(); // ignored after stop
    release();
    await stopped;
    expect(runs).toBe(2);
    expect(maxInFlight).toBe(1);
  });
});
