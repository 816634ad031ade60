// Chaos against the real demo fleet (hub, 4 leaves, 2 coordinators, 28 actor processes): SIGKILL the active
// gateway of a random domain again and again (the launcher restarts killed processes after 1 s, as a
// kubelet would), kill the active coordinator, kill and restart a leaf server. An independent observer on
// the hub checks that every kill brings a new active, that no Gateway ever had more candidates acting
// active than its replicas (split brain, counting anyone still acting on a stale term), and that every
// Gateway record survives.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listGateways } from "../../shared/gateway-store";
import { openBuckets } from "../../shared/nats";
import { replicasIn } from "../../services/fleet/observer";
import { defaultTopology, eventually, fleetStatus, startTestFleet, type TestFleet } from "../helpers/fleet";

const KILLS = Number(process.env.RAVEN_CHAOS_KILLS ?? 12);
const seed = Number(process.env.RAVEN_CHAOS_SEED ?? Date.now() % 100_000);
let rand = seed;
const random = () => (rand = (rand * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

let t: TestFleet;
const topology = defaultTopology();
const replicas = replicasIn(topology.gateways);
const failovers: number[] = [];

beforeAll(async () => {
  console.log(`chaos seed ${seed} (RAVEN_CHAOS_SEED to replay), kills ${KILLS}`);
  t = await startTestFleet(topology);
}, 90_000);

afterAll(async () => {
  if (failovers.length) {
    const sorted = [...failovers].sort((a, b) => a - b);
    console.log(`chaos failovers (ms, kill -> new assignment seen): ${sorted.map((x) => x.toFixed(0)).join(" ")}`);
  }
  await t?.stop();
});

async function bothCandidatesHealthy(gateway: string): Promise<boolean> {
  const st = await fleetStatus(t.fleet, 500);
  const d = st?.domains.find((x) => x.gateway === gateway);
  return !!d && d.candidates.length === 2 && d.candidates.every((c) => c.healthy) && d.active.length > 0;
}

describe("chaos", () => {
  it(`survives ${KILLS} SIGKILLs of active gateways without split brain`, async () => {
    const multi = topology.gateways
      .filter((g) => new Set(g.spec.endpoints.map((e) => e.nodeName)).size >= 2)
      .map((g) => g.metadata.name);
    for (let i = 0; i < KILLS; i++) {
      const gateway = multi[Math.floor(random() * multi.length)]!;
      await eventually(`${gateway} to have two healthy candidates`, 15_000, () => bothCandidatesHealthy(gateway));
      const before = await t.observer.waitFor((a) => a.gateway === gateway && a.active.length > 0, 5_000);
      const victim = before.active[0]!.nodeName;
      const killedAt = performance.now();
      expect(t.fleet.kill(`gateway-${victim}`), `kill gateway-${victim}`).toBeGreaterThan(0);
      const after = await t.observer.waitFor(
        (a) =>
          a.gateway === gateway &&
          a.term > before.term &&
          a.active.length > 0 &&
          a.active.every((e) => e.nodeName !== victim),
        5_000,
        `a new active for ${gateway} after killing ${victim}`,
      );
      failovers.push(after.seenAt - killedAt);
    }
    expect(failovers.length).toBe(KILLS);
    // The check had something to check: every new active left claims behind.
    expect(t.observer.claims.length).toBeGreaterThan(KILLS);
    expect(t.observer.violations(replicas)).toEqual([]);
  }, 300_000);

  it("survives a SIGKILL of the active coordinator", async () => {
    const before = await fleetStatus(t.fleet);
    const termsBefore = Object.fromEntries(before!.domains.map((d) => [d.gateway, d.term]));
    const name = before!.coordinator.split("-").slice(0, 2).join("-");
    t.fleet.kill(name);
    const after = await eventually("the other coordinator to take over", 10_000, async () => {
      const st = await fleetStatus(t.fleet, 500);
      return st && st.coordinator !== before!.coordinator ? st : undefined;
    });
    // Nothing is re-elected needlessly: every term is as it was.
    expect(Object.fromEntries(after.domains.map((d) => [d.gateway, d.term]))).toEqual(termsBefore);
    expect(t.observer.violations(replicas)).toEqual([]);
  }, 60_000);

  it("recovers by itself when a leaf server is killed and restarted", async () => {
    const leaf = t.fleet.procs.get("leaf-factory-a")!;
    const exited = leaf.waitExit();
    leaf.kill("SIGKILL");
    await exited;
    await new Promise((r) => setTimeout(r, 1_500));
    leaf.start();
    const st = await eventually("factory-a active again with every node ready", 20_000, async () => {
      const s = await fleetStatus(t.fleet, 500);
      const d = s?.domains.find((x) => x.domain === "factory-a");
      return d && d.active.length > 0 && d.nodes.length === 5 && d.nodes.every((n) => n.ready) ? s : undefined;
    });
    expect(st!.domains.every((d) => d.active.length > 0)).toBe(true);
    expect(t.observer.violations(replicas)).toEqual([]);
  }, 60_000);

  it("keeps every Gateway record", async () => {
    const nc = await t.fleet.connect();
    try {
      const gws = await listGateways((await openBuckets(nc)).gateways);
      const names = gws.map((g) => g.metadata.name).sort();
      for (const g of topology.gateways) expect(names).toContain(g.metadata.name);
      expect(names).toContain("kiosk-1");
      for (const g of topology.gateways) {
        expect(gws.find((x) => x.metadata.name === g.metadata.name)!.spec).toEqual(g.spec);
      }
    } finally {
      await nc.close();
    }
  });
});
