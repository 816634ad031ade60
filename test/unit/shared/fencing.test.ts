import { describe, expect, it } from "vitest";
import {
  AckDecision,
  ackDecision,
  coordinatorLeaseEnd,
  fenceTimingsProblem,
  gatewayLeaseEnd,
  handoverMs,
  isStaleTerm,
  leaseRunning,
  mayTakeLease,
  type AckInput,
} from "../../../shared/fencing";
import { defaultTimings } from "../../../shared/config";

const settledNamedHealthy: AckInput = {
  named: true,
  healthy: true,
  settled: true,
  recordTerm: 7,
  heartbeatTerm: 7,
  heartbeatActs: true,
};

/** Every combination of the decision's inputs, terms drawn from around the record's. */
function* everyInput(): Generator<AckInput> {
  for (const named of [false, true])
    for (const healthy of [false, true])
      for (const settled of [false, true])
        for (const heartbeatTerm of [5, 6, 7, 8])
          for (const heartbeatActs of [false, true])
            yield { named, healthy, settled, recordTerm: 7, heartbeatTerm, heartbeatActs };
}

describe("ackDecision", () => {
  it("acknowledges a healthy candidate named in a settled record", () => {
    expect(ackDecision(settledNamedHealthy)).toBe(AckDecision.Ack);
  });

  it("acknowledges it whatever term it believes, so one that missed the assignment gains the lease and the term at once", () => {
    expect(ackDecision({ ...settledNamedHealthy, heartbeatTerm: 6, heartbeatActs: false })).toBe(AckDecision.Ack);
  });

  it("never acknowledges a candidate the record does not name", () => {
    expect(ackDecision({ ...settledNamedHealthy, named: false })).not.toBe(AckDecision.Ack);
  });

  it("never acknowledges an unhealthy candidate: it is about to be replaced, and its lease must run out first", () => {
    expect(ackDecision({ ...settledNamedHealthy, healthy: false })).not.toBe(AckDecision.Ack);
  });

  it("says nothing at all while the record is unsettled (mid-write, or not yet written by this coordinator)", () => {
    for (const i of everyInput()) if (!i.settled) expect(ackDecision(i), JSON.stringify(i)).toBe(AckDecision.Ignore);
  });

  it("acknowledges exactly the settled, named, healthy candidates, over every combination of inputs", () => {
    for (const i of everyInput()) {
      expect(ackDecision(i) === AckDecision.Ack, JSON.stringify(i)).toBe(i.settled && i.named && i.healthy);
    }
  });

  it("corrects a candidate that acts unnamed or believes another term, without a lease", () => {
    expect(ackDecision({ ...settledNamedHealthy, named: false, heartbeatTerm: 7, heartbeatActs: true })).toBe(
      AckDecision.Correct,
    );
    expect(ackDecision({ ...settledNamedHealthy, named: false, heartbeatTerm: 6, heartbeatActs: false })).toBe(
      AckDecision.Correct,
    );
    expect(ackDecision({ ...settledNamedHealthy, healthy: false, heartbeatTerm: 8 })).toBe(AckDecision.Correct);
  });

  it("ignores an unnamed standby that agrees on the term and does not act", () => {
    expect(ackDecision({ ...settledNamedHealthy, named: false, heartbeatActs: false })).toBe(AckDecision.Ignore);
  });
});

describe("leases", () => {
  it("end fenceMs after the acknowledged heartbeat was sent, and the end itself is outside", () => {
    const end = gatewayLeaseEnd(1_000, 250);
    expect(end).toBe(1_250);
    expect(leaseRunning(end, 1_249.9)).toBe(true);
    expect(leaseRunning(end, 1_250)).toBe(false);
    expect(leaseRunning(0, 0)).toBe(false);
  });

  it("of a coordinator end leaseMs after its renewal was sent", () => {
    expect(coordinatorLeaseEnd(5_000, 1_500)).toBe(6_500);
  });

  it("let a campaigner take an empty key at once, and a held one only after seeing one revision for leaseMs", () => {
    expect(mayTakeLease(false, 100, 100, 1_500)).toBe(true);
    expect(mayTakeLease(true, 100, 1_599, 1_500)).toBe(false);
    expect(mayTakeLease(true, 100, 1_600, 1_500)).toBe(true);
  });
});

describe("terms", () => {
  it("refuse only what is older than the newest term seen", () => {
    expect(isStaleTerm(4, 5)).toBe(true);
    expect(isStaleTerm(5, 5)).toBe(false);
    expect(isStaleTerm(6, 5)).toBe(false);
  });
});

describe("the fencing argument", () => {
  // A deterministic pseudo-random sequence, so a failure names a reproducible case.
  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  }
  const t = defaultTimings;

  it("a dead-declared active's last lease ends before the coordinator can name its successor", () => {
    const r = rng(12);
    for (let n = 0; n < 10_000; n++) {
      // The newest acknowledged heartbeat was sent at `sent` on the candidate's clock, and reached the
      // coordinator `transit` later (the candidate's and coordinator's clocks tick at the same rate but have
      // an arbitrary offset, which cancels out: only durations are compared).
      const sent = r() * 1e6;
      const transit = r() * 2_000;
      const lastHeard = sent + transit;
      const successorNamed = lastHeard + t.gatewayDeadAfterMs; // silent for a whole window
      expect(gatewayLeaseEnd(sent, t.gatewayFenceMs)).toBeLessThan(successorNamed);
    }
  });

  it("a live active removed from the record holds no lease when the handover names its successor", () => {
    const r = rng(34);
    for (let n = 0; n < 10_000; n++) {
      // Acknowledgements stop once the removal is written; the last one was for a heartbeat sent before that,
      // and the successor is written handoverMs after the removal.
      const removedAt = r() * 1e6;
      const sent = removedAt - r() * 2_000;
      expect(
        leaseRunning(gatewayLeaseEnd(sent, t.gatewayFenceMs), removedAt + handoverMs(t.gatewayFenceMs, t.sweepMs)),
      ).toBe(false);
    }
  });

  it("holds for the defaults, and the config refuses timings that would break it", () => {
    expect(
      fenceTimingsProblem({
        heartbeatMs: t.gatewayHeartbeatMs,
        fenceMs: t.gatewayFenceMs,
        deadAfterMs: t.gatewayDeadAfterMs,
      }),
    ).toBeNull();
    expect(fenceTimingsProblem({ heartbeatMs: 100, fenceMs: 300, deadAfterMs: 300 })?.key).toBe("gatewayFenceMs");
    expect(fenceTimingsProblem({ heartbeatMs: 150, fenceMs: 250, deadAfterMs: 300 })?.key).toBe("gatewayHeartbeatMs");
  });
});
