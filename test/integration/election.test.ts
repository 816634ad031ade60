// Election and failover against a real fleet: real nats-server hub and leaves, real actor processes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyGateway } from "../../shared/gateway-store";
import { connectOnce, openBuckets } from "../../shared/nats";
import { decode, encode, subjects } from "../../shared/protocol";
import { eventually, fleetStatus, sleep, smallTopology, startTestFleet, type TestFleet } from "../helpers/fleet";

let t: TestFleet;
const replicas = () => 1;

beforeAll(async () => {
  t = await startTestFleet(smallTopology());
}, 60_000);

afterAll(async () => {
  await t?.stop();
});

const activeOf = (gateway: string) => t.observer.latest.get(gateway);

describe("election on a real mesh", () => {
  it("elects one active per Gateway and the solo node for itself", async () => {
    const st = await fleetStatus(t.fleet);
    expect(st).not.toBeNull();
    const byGateway = new Map(st!.domains.map((d) => [d.gateway, d]));
    expect([...byGateway.keys()].sort()).toEqual(["gw-a", "gw-c", "solo-1"]);
    for (const d of st!.domains) {
      expect(new Set(d.active.map((a) => a.nodeName)).size).toBe(1);
      expect(d.active.map((a) => a.type).sort()).toEqual(["proxy", "tunnel"]);
      expect(d.term).toBeGreaterThanOrEqual(1);
    }
    expect(byGateway.get("solo-1")!.solo).toBe(true);
    expect(byGateway.get("solo-1")!.active[0]!.nodeName).toBe("solo-1");
    expect(
      byGateway
        .get("gw-a")!
        .nodes.map((n) => n.node)
        .sort(),
    ).toEqual(["a-gw-1", "a-gw-2", "a-node-1"]);
  });

  it("fails over to the other candidate when the active is SIGKILLed, with a higher term", async () => {
    const before = await t.observer.waitFor((a) => a.gateway === "gw-a" && a.active.length > 0, 5_000);
    const victim = before.active[0]!.nodeName;
    const killedAt = performance.now();
    expect(t.fleet.kill(`gateway-${victim}`)).toBeGreaterThan(0);
    const after = await t.observer.waitFor(
      (a) => a.gateway === "gw-a" && a.term > before.term && a.active.length > 0,
      5_000,
      "new gw-a active",
    );
    expect(after.active.every((e) => e.nodeName !== victim)).toBe(true);
    expect(after.seenAt - killedAt).toBeLessThan(3_000);
    expect(t.observer.violations(replicas)).toEqual([]);
  });

  it("keeps the healthy active when the killed candidate comes back (sticky)", async () => {
    const current = activeOf("gw-a")!;
    const standby = current.active[0]!.nodeName === "a-gw-1" ? "a-gw-2" : "a-gw-1";
    await eventually("the restarted candidate to be healthy", 10_000, async () => {
      const st = await fleetStatus(t.fleet);
      return st?.domains.find((d) => d.gateway === "gw-a")?.candidates.find((c) => c.node === standby)?.healthy;
    });
    await sleep(1_000);
    expect(activeOf("gw-a")!.term).toBe(current.term);
    expect(activeOf("gw-a")!.active[0]!.nodeName).toBe(current.active[0]!.nodeName);
  });

  it("hands over without overlap when the active drains on SIGTERM", async () => {
    const before = activeOf("gw-a")!;
    const victim = before.active[0]!.nodeName;
    const proc = t.fleet.procs.get(`gateway-${victim}`)!;
    const exited = proc.waitExit();
    t.fleet.kill(`gateway-${victim}`, "SIGTERM");
    const after = await t.observer.waitFor(
      (a) => a.gateway === "gw-a" && a.active.some((e) => e.nodeName !== victim),
      5_000,
      "successor after drain",
    );
    // Phase one removes the live active alone, phase two adds the successor: two terms.
    expect(after.term).toBe(before.term + 2);
    expect(
      t.observer.history.some((a) => a.gateway === "gw-a" && a.term === before.term + 1 && a.active.length === 0),
    ).toBe(true);
    await exited;
    expect(proc.child?.exitCode).toBe(0);
    expect(t.observer.violations(replicas)).toEqual([]);
  });

  it("elects at once for a Gateway spec applied at runtime (replicas 1 -> 2)", async () => {
    await eventually("both gw-a candidates healthy", 15_000, async () => {
      const st = await fleetStatus(t.fleet);
      return st?.domains.find((d) => d.gateway === "gw-a")?.candidates.every((c) => c.healthy);
    });
    const gw = smallTopology().gateways.find((g) => g.metadata.name === "gw-a")!;
    const nc = await t.fleet.connect();
    try {
      expect(
        await applyGateway((await openBuckets(nc)).gateways, {
          ...gw,
          spec: { ...gw.spec, proxyConfig: { Replicas: 2 } },
        }),
      ).toBe("updated");
    } finally {
      await nc.close();
    }
    const after = await t.observer.waitFor(
      (a) => a.gateway === "gw-a" && a.active.filter((e) => e.type === "proxy").length === 2,
      5_000,
      "two proxy actives",
    );
    expect(new Set(after.active.filter((e) => e.type === "proxy").map((e) => e.nodeName))).toEqual(
      new Set(["a-gw-1", "a-gw-2"]),
    );
    expect(after.active.filter((e) => e.type === "tunnel")).toHaveLength(1);
    expect(t.observer.violations((g, type) => (g === "gw-a" && type === "proxy" ? 2 : 1))).toEqual([]);
  });

  it("refuses bad input with a clear error and keeps running", async () => {
    const nc = await connectOnce(t.fleet.hubUrl, "test-bad-input");
    try {
      // Random bytes on every subject the coordinator serves.
      for (let i = 0; i < 200; i++) {
        const junk = new Uint8Array(Array.from({ length: 1 + (i % 64) }, (_, k) => (k * 37 + i * 11) & 0xff));
        nc.publish(subjects.gatewayHeartbeat("edge-a", "a-gw-1"), junk);
        nc.publish(subjects.nodeHeartbeat("edge-a", "a-node-1"), junk);
      }
      const garbage = await nc.request(subjects.nodeRegister("edge-a", "intruder"), new Uint8Array([0xc1, 0x00]), {
        timeout: 2_000,
      });
      const err = decode(garbage.data);
      expect(err.type).toBe("error");
      expect(err.type === "error" && err.body.code).toBe("INVALID_MESSAGE");

      // A node that claims a domain its labels do not place it in is refused, and the error names both.
      const body = {
        node: "intruder",
        domain: "edge-a",
        labels: { "apps.openyurt.io/nodepool": "cloud" },
        internalIP: "10.9.9.9",
        startedAt: Date.now(),
      };
      const reply = decode(
        (
          await nc.request(subjects.nodeRegister("edge-a", "intruder"), encode("node.register", body), {
            timeout: 2_000,
          })
        ).data,
      );
      expect(reply.type).toBe("error");
      expect(reply.type === "error" && reply.body.message).toMatch(/edge-a.*cloud/);

      // A body that does not match its subject is refused too.
      const spoof = decode(
        (await nc.request(subjects.nodeRegister("cloud", "c-gw-1"), encode("node.register", body), { timeout: 2_000 }))
          .data,
      );
      expect(spoof.type === "error" && spoof.body.message).toMatch(/subject/);
    } finally {
      await nc.close();
    }
    const st = await fleetStatus(t.fleet);
    expect(st?.domains.length).toBe(3);
    expect(t.fleet.procs.get("coordinator-1")!.running || t.fleet.procs.get("coordinator-2")!.running).toBe(true);
  });
});
