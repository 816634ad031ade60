// Proxy mode end to end in network namespaces (root): the demo fleet with every domain in its own namespace,
// factory-a, shop-b and the solo kiosk-1 reusing the same InternalIPs. Asked by name through the cloud
// gateway, every node answers with its own name; the solo node is reached through its own gateway role.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultTopology, startTestFleet, type TestFleet } from "../helpers/fleet";
import { curl } from "../helpers/proxy";
import { activeDoor, proxySuite } from "./proxy-suite";

const isRoot = process.getuid?.() === 0;
const hasIp = (() => {
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let t: TestFleet;
const topology = defaultTopology();

describe.skipIf(!isRoot || !hasIp)(
  `proxy mode in network namespaces${isRoot && hasIp ? "" : " (skipped: needs root and iproute2)"}`,
  () => {
    beforeAll(async () => {
      t = await startTestFleet(topology, { netns: true });
    }, 90_000);

    afterAll(async () => {
      await t?.stop();
    });

    it("runs every domain in its own namespace, with InternalIPs that collide across domains", () => {
      const byIp = new Map<string, string[]>();
      for (const n of topology.nodes) byIp.set(n.internalIP, [...(byIp.get(n.internalIP) ?? []), n.name]);
      expect(byIp.get("192.168.1.11")).toEqual(["factory-a-gw-1", "shop-b-gw-1", "kiosk-1"]);
      const namespaces = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
      for (const d of t.fleet.allDomains()) expect(namespaces).toContain(t.fleet.namespaceOf(d)!);
    });

    it("answers each of the nodes sharing 192.168.1.11 with its own name, by CONNECT and as a forward proxy", async () => {
      const door = await activeDoor(t, "gw-cloud");
      for (const node of ["factory-a-gw-1", "shop-b-gw-1", "kiosk-1"]) {
        const viaConnect = await curl([
          "-p",
          "-x",
          `http://${door.host}:${door.frontPort}`,
          `http://${node}:10255/name`,
        ]);
        expect(viaConnect.body.trim()).toBe(node);
        const viaForward = await curl(["-x", `http://${door.host}:${door.frontPort}`, `http://${node}:9100/metrics`]);
        expect(viaForward.body).toContain(`node="${node}"`);
      }
    });

    proxySuite({ t: () => t, topology, cloudGateway: "gw-cloud", edgeGateway: "gw-shop-b", edgeNode: "shop-b-node-1" });
  },
);
