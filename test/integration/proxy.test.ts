// Proxy mode on loopback (no root needed): cloud gateway -> TLS channel dialed out by the edge gateway ->
// target, through real processes, with every node's InternalIP a distinct 127.x address.
import { afterAll, beforeAll, describe } from "vitest";
import { expect, it } from "vitest";
import { InspectRecorder } from "../../services/ui/recorder";
import { systemClock } from "../../shared/clock";
import { eventually, fleetStatus, smallTopology, startTestFleet, type TestFleet } from "../helpers/fleet";
import { curl } from "../helpers/proxy";
import { proxySuite } from "./proxy-suite";

let t: TestFleet;
const topology = smallTopology(true);

beforeAll(async () => {
  t = await startTestFleet(topology, { proxy: true });
}, 60_000);

afterAll(async () => {
  await t?.stop();
});

describe("proxy mode on loopback", () => {
  proxySuite({ t: () => t, topology, cloudGateway: "gw-c", edgeGateway: "gw-a", edgeNode: "a-node-1" });

  it("reports each active gateway's peer links and channels on the mesh (gw.proxy), as the debugger shows them", async () => {
    const nc = await t.fleet.connect();
    const recorder = new InspectRecorder({ nc, clock: systemClock, viewerId: "proxy-test", statusEveryMs: 200 });
    recorder.start();
    try {
      const st = await fleetStatus(t.fleet);
      const activeOf = (gw: string) => st!.domains.find((d) => d.gateway === gw)!.active.find((a) => a.type === "proxy")!.nodeName;
      const cloud = activeOf("gw-c");
      const edge = activeOf("gw-a");
      const door = t.fleet.proxyListen(cloud)!;
      const answer = await curl(["-p", "-x", `http://${door.host}:${door.frontPort}`, "http://a-node-1:10255/name"]);
      expect(answer.body.trim()).toBe("a-node-1");
      const reports = await eventually("proxy reports from both active gateways, counting the channel", 10_000, () => {
        const p = recorder.topology.proxies;
        const linked = p[edge]?.tunnels.some((l) => l.peer === cloud && l.state === "up") && p[cloud]?.tunnels.some((l) => l.peer === edge);
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
