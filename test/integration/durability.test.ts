// Durable state: the inventory in the hub's JetStream KV survives a SIGKILL of the active coordinator (the
// standby takes over without re-electing) and a SIGKILL of the hub itself (file storage; records and terms
// come back intact and the fleet recovers by itself).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listGateways } from "../../shared/gateway-store";
import { openBuckets } from "../../shared/nats";
import { waitForPort } from "../../services/fleet/procs";
import { eventually, fleetStatus, sleep, smallTopology, startTestFleet, type TestFleet } from "../helpers/fleet";

let t: TestFleet;

beforeAll(async () => {
  t = await startTestFleet(smallTopology());
}, 60_000);

afterAll(async () => {
  await t?.stop();
});

async function records() {
  const nc = await t.fleet.connect();
  try {
    return await listGateways((await openBuckets(nc)).gateways);
  } finally {
    await nc.close();
  }
}

const summary = (gws: Awaited<ReturnType<typeof records>>) =>
  Object.fromEntries(
    gws.map((g) => [
      g.metadata.name,
      {
        term: g.status.term,
        active: g.status.activeEndpoints.map((e) => `${e.type}/${e.nodeName}`).sort(),
        spec: g.spec,
      },
    ]),
  );

describe("durability", () => {
  it("survives a SIGKILL of the active coordinator: the standby takes over and re-elects nothing", async () => {
    const before = await fleetStatus(t.fleet);
    expect(before).not.toBeNull();
    const recordsBefore = summary(await records());
    const activeName = before!.coordinator.split("-").slice(0, 2).join("-"); // coordinator-N-pid-rand
    expect(t.fleet.kill(activeName)).toBeGreaterThan(0);
    const after = await eventually("the standby coordinator to answer", 5_000, async () => {
      const st = await fleetStatus(t.fleet, 500);
      return st && st.coordinator !== before!.coordinator ? st : undefined;
    });
    expect(after.coordinator).not.toBe(before!.coordinator);
    await sleep(1_000);
    expect(summary(await records())).toEqual(recordsBefore);
  });

  it("survives a SIGKILL of the hub: records and terms intact, fleet recovers by itself", async () => {
    await eventually(
      "both coordinators up again",
      10_000,
      () => t.fleet.procs.get("coordinator-1")!.running && t.fleet.procs.get("coordinator-2")!.running,
    );
    const before = summary(await records());
    const hub = t.fleet.procs.get("hub")!;
    const exited = hub.waitExit();
    hub.kill("SIGKILL");
    await exited;
    await sleep(500);
    hub.start();
    await waitForPort(Number(t.fleet.hubUrl.split(":").pop()), 10_000);
    const after = await eventually("records readable after the hub restart", 15_000, async () =>
      summary(await records()),
    );
    for (const [name, rec] of Object.entries(before)) {
      expect(after[name], `record ${name}`).toBeDefined();
      expect(after[name]!.spec).toEqual(rec.spec);
      expect(after[name]!.term).toBeGreaterThanOrEqual(rec.term);
    }
    const st = await eventually("every domain active again", 20_000, async () => {
      const s = await fleetStatus(t.fleet, 500);
      return s &&
        s.domains.length === 3 &&
        s.domains.every((d) => d.active.length === 2 && d.nodes.every((n) => n.ready))
        ? s
        : undefined;
    });
    expect(st.domains.map((d) => d.gateway).sort()).toEqual(["gw-a", "gw-c", "solo-1"]);
    expect(t.observer.violations(() => 1)).toEqual([]);
  });
});
