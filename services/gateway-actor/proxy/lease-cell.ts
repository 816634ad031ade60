// The proxy thread's lease, shared with the main thread through memory: the main thread writes when its lease
// ends on every heartbeat, the proxy thread reads it on every channel open. A message per heartbeat woke the
// proxy thread ten times a second for nothing but this number.
// The end is a point on process.hrtime's monotonic clock, which every thread of the process shares
// (performance.now() has an origin per thread), in microseconds since that clock's origin, stored with Atomics
// in a BigInt64 (a plain Float64 could be read half-written). The rule itself is shared/fencing.ts's.
import { leaseRunning } from "../../../shared/fencing";

const nowUs = (): bigint => process.hrtime.bigint() / 1_000n;

export class LeaseCell {
  private readonly cell: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(8)) {
    this.cell = new BigInt64Array(buffer);
  }

  /** The lease runs for `leftMs` more from now; 0 or less (or not finite): it does not run. */
  set(leftMs: number): void {
    const end = Number.isFinite(leftMs) && leftMs > 0 ? nowUs() + BigInt(Math.floor(leftMs * 1_000)) : 0n;
    Atomics.store(this.cell, 0, end);
  }

  /** Whether the lease runs now. */
  running(): boolean {
    return leaseRunning(Number(Atomics.load(this.cell, 0)), Number(nowUs()));
  }
}
