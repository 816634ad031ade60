// `raven hosts`: edge node names (solo nodes included) mapped to the proxy address, cloud nodes to their own,
// in the edge-tunnel-nodes format.
import { describe, expect, it } from "vitest";
import { hostsFile } from "../../../services/cli/hosts";
import { activeProxyAddress, soloGateway, type Gateway } from "../../../shared/gateway";
import { both, gateway } from "../statecharts/fixtures";

const node = (nodeName: string) => ({ nodeName, privateIP: "192.168.1.11", subnets: [] });

function records(): Gateway[] {
  const cloud = gateway("gw-cloud", { endpoints: both("c-1"), nodes: [node("c-1"), node("c-2")] });
  cloud.spec.exposeType = "PublicIP";
  cloud.status.activeEndpoints = [
    { nodeName: "c-1", type: "proxy", port: 10262, underNAT: false, publicIP: "198.18.7.10" },
  ];
  const edge = gateway("gw-a", { endpoints: both("a-gw-1"), nodes: [node("a-node-1"), node("a-gw-1")] });
  const solo = soloGateway("kiosk-1");
  solo.status.nodes = [node("kiosk-1")];
  return [cloud, edge, solo];
}

describe("raven hosts", () => {
  it("maps every edge node, solo ones included, to the proxy and cloud nodes to their own address, sorted", () => {
    expect(hostsFile(records(), "198.18.7.10")).toBe(
      [
        "# Raven: 3 edge nodes -> proxy 198.18.7.10, 2 cloud nodes at their own address (raven hosts)",
        "192.168.1.11\tc-1",
        "192.168.1.11\tc-2",
        "198.18.7.10\ta-gw-1",
        "198.18.7.10\ta-node-1",
        "198.18.7.10\tkiosk-1",
        "",
      ].join("\n"),
    );
  });

  it("defaults to the active cloud proxy endpoint's publicIP, and has none without one", () => {
    expect(activeProxyAddress(records())).toBe("198.18.7.10");
    expect(activeProxyAddress(records().slice(1))).toBeUndefined();
  });
});
