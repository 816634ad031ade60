// Proxy mode on loopback (no root needed): cloud gateway -> TLS channel dialed out by the edge gateway ->
// target, through real processes, with every node's InternalIP a distinct 127.x address.
import { afterAll, beforeAll, describe } from "vitest";
import { expect, it } from "vitest";
import { InspectRecorder } from "../../services/ui/recorder";
import { systemClock } from "../../shared/clock";
import { eventually, fleetStatus, sleep, smallTopology, startTestFleet, type TestFleet } from "../helpers/fleet";
import { curl } from "../helpers/proxy";
import { activeDoor, proxySuite } from "./proxy-suite";
import { readFileSync } from "node:fs";
import { join } from "node:path";

let t: TestFleet;
// Pod CIDRs as the inventory would have them, with edge-a's a-node-1 overlapping the solo node's: tunnel
// mode must refuse both domains on their records, and proxy mode (by name) must not care.
const POD_CIDRS: Record<string, string> = {
  "c-gw-1": "10.244.0.0/24",
  "c-gw-2": "10.244.1.0/24",
  "a-gw-1": "10.244.16.0/24",
  "a-gw-2": "10.244.17.0/24",
  "a-node-1": "10.244.18.0/24",
  "solo-1": "10.244.18.0/23",
};
const base = smallTopology(true);
const topology = { ...base, nodes: base.nodes.map((n) => ({ ...n, podCIDR: POD_CIDRS[n.name]! })) };

// The targets close a keep-alive connection idle for 1 s, unannounced (no Keep-Alive hint), as many servers
// do: the forward proxy must notice, not learn it from a hung request.
const TARGET_IDLE_MS = 1_000;
/** The forward proxy's deadline for a response head, short here so that the test can wait for it. */
const RESPONSE_TIMEOUT_MS = 1_500;

/** A gateway's raven_proxy_requests_repeated_total, from its /metrics (the URL its log names). */
async function repeatedRequests(node: string): Promise<number> {
  const log = readFileSync(join(t.runDir, "logs", `gateway-${node}.log`), "utf8");
  const url = [...log.matchAll(/"metrics":"([^"]+)"/g)].at(-1)?.[1];
  if (!url) throw new Error(`no metrics URL in gateway-${node}.log`);
  const text = await (await fetch(url)).text();
  return Number(/^raven_proxy_requests_repeated_total (\d+)/m.exec(text)?.[1] ?? 0);
}

beforeAll(async () => {
  t = await startTestFleet(topology, {
    proxy: true,
    demoTargetIdleMs: TARGET_IDLE_MS,
    proxyResponseTimeoutMs: RESPONSE_TIMEOUT_MS,
  });
}, 60_000);

afterAll(async () => {
  await t?.stop();
});

describe("proxy mode on loopback", () => {
  proxySuite({ t: () => t, topology, cloudGateway: "gw-c", edgeGateway: "gw-a", edgeNode: "a-node-1" });

  it("refuses overlapping pod CIDRs for tunnel mode on both domains' records, and proxy mode still serves their nodes", async () => {
    const st = await eventually("tunnel problems on the records", 10_000, async () => {
      const s = await fleetStatus(t.fleet);
      return s?.domains.filter((d) => d.tunnelProblem).length === 2 ? s : undefined;
    });
    const problem = "pod CIDR 10.244.18.0/24 of domain edge-a overlaps 10.244.18.0/23 of domain edge-s";
    expect(st.domains.find((d) => d.domain === "edge-a")!.tunnelProblem).toBe(problem);
    expect(st.domains.find((d) => d.domain === "edge-s")!.tunnelProblem).toBe(problem);
    expect(st.domains.find((d) => d.domain === "cloud")!.tunnelProblem).toBeUndefined();
    const cloud = st.domains.find((d) => d.gateway === "gw-c")!.active.find((a) => a.type === "proxy")!.nodeName;
    const door = t.fleet.proxyListen(cloud)!;
    for (const node of ["a-node-1", "solo-1"]) {
      expect(
        (await curl(["-p", "-x", `http://${door.host}:${door.frontPort}`, `http://${node}:10255/name`])).body.trim(),
      ).toBe(node);
    }
  });

  it("never reuses a channel whose target closed it: a request after the target's idle close is answered", async () => {
    const door = await activeDoor(t, "gw-c");
    const proxy = `http://${door.host}:${door.frontPort}`;
    const repeatedBefore = await repeatedRequests(door.node);
    for (let i = 0; i < 3; i++) {
      // Each request leaves its channel in the forward proxy's keep-alive pool; the target then closes it.
      const r = await curl(["-x", proxy, "http://a-node-1:10255/name"], 5_000);
      expect(r.status, `request ${i + 1}: ${r.stderr}`).toBe(200);
      expect(r.body.trim()).toBe("a-node-1");
      await sleep(TARGET_IDLE_MS + 500);
    }
    // Answered, and not by a repeat: the closed channel had left the pool before the next request came.
    // (The proxy thread reports its counters every second; the last sleep outlasts one report.)
    expect(await repeatedRequests(door.node)).toBe(repeatedBefore);
  });

  it("sends a bodiless GET again when its reused channel closes under it; a POST gets 502 at once", async () => {
    const door = await activeDoor(t, "gw-c");
    const proxy = `http://${door.host}:${door.frontPort}`;
    const keepOne = async () => expect((await curl(["-x", proxy, "http://a-node-1:10255/name"])).status).toBe(200);
    // /close-reused closes the connection unanswered when it is not the connection's first request: the
    // request lands on a reused channel just as the target closes it.
    await keepOne();
    const post = await curl(["-x", proxy, "-d", "x", "http://a-node-1:10255/close-reused"], 5_000);
    expect(post.status, "a POST is never sent twice (405 here would mean the channel was not reused)").toBe(502);
    await keepOne();
    const repeatedBefore = await repeatedRequests(door.node);
    const get = await curl(["-x", proxy, "http://a-node-1:10255/close-reused"], 5_000);
    expect(get.status, get.stderr).toBe(200);
    expect(get.body.trim()).toBe("a-node-1");
    await eventually("the repeat counted", 3_000, async () =>
      (await repeatedRequests(door.node)) > repeatedBefore ? true : undefined,
    );
    // Two pooled channels, both closing under it: the last repeat takes a channel of its own (through the
    // edge, as every channel: the cloud cannot even resolve a-node-1 itself).
    const slow = "http://a-node-1:10255/logs?follow=true&lines=3&intervalMs=200";
    const both = await Promise.all([curl(["-x", proxy, slow]), curl(["-x", proxy, slow])]);
    expect(both.map((r) => r.status)).toEqual([200, 200]);
    const third = await curl(["-x", proxy, "http://a-node-1:10255/close-reused"], 5_000);
    expect(third.status, `${third.body} ${third.stderr}`).toBe(200);
    expect(third.body.trim()).toBe("a-node-1");
  });

  it("answers 504 when a target sends no response head within the deadline, and serves the next request", async () => {
    const door = await activeDoor(t, "gw-c");
    const proxy = `http://${door.host}:${door.frontPort}`;
    const stalled = await curl(["-x", proxy, "http://a-node-1:10255/stall"], 10_000);
    expect(stalled.status).toBe(504);
    expect(stalled.body).toContain(`a-node-1:10255 sent no response within ${RESPONSE_TIMEOUT_MS} ms`);
    expect((await curl(["-x", proxy, "http://a-node-1:10255/name"], 5_000)).body.trim()).toBe("a-node-1");
  });

  it("reports each active gateway's peer links and channels on the mesh (gw.proxy), as the debugger shows them", async () => {
    const nc = await t.fleet.connect();
    const recorder = new InspectRecorder({ nc, clock: systemClock, viewerId: "proxy-test", statusEveryMs: 200 });
    recorder.start();
    try {
      const st = await fleetStatus(t.fleet);
      const activeOf = (gw: string) =>
        st!.domains.find((d) => d.gateway === gw)!.active.find((a) => a.type === "proxy")!.nodeName;
      const cloud = activeOf("gw-c");
      const edge = activeOf("gw-a");
      const door = t.fleet.proxyListen(cloud)!;
      const answer = await curl(["-p", "-x", `http://${door.host}:${door.frontPort}`, "http://a-node-1:10255/name"]);
      expect(answer.body.trim()).toBe("a-node-1");
      const reports = await eventually("proxy reports from both active gateways, counting the channel", 10_000, () => {
        const p = recorder.topology.proxies;
        const linked =
          p[edge]?.tunnels.some((l) => l.peer === cloud && l.state === "up") &&
          p[cloud]?.tunnels.some((l) => l.peer === edge);
        return linked && p[cloud]!.channelsOpened > 0 && p[edge]!.channelsOpened > 0 ? p : undefined;
      });
      expect(reports[edge]!.side).toBe("edge");
      expect(reports[cloud]!.side).toBe("cloud");
    } finally {
      recorder.stop();
      await nc.close();
    }
  });
});
