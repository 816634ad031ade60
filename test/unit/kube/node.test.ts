// candidacyOf: which Gateway an agent on a node runs a gateway actor for, from the cluster's Gateway objects.
import { describe, expect, it } from "vitest";
import { candidacyOf } from "../../../lib/kube";

const gw = (name: string, ...nodes: string[]) => ({
  metadata: { name, resourceVersion: "3" },
  spec: { endpoints: nodes.map((nodeName) => ({ nodeName, type: "proxy" })) },
});
const node = (name: string, labels: Record<string, string> = {}) => ({ name, labels });

describe("candidacyOf", () => {
  it("names the Gateway that lists the node as an endpoint", () => {
    const objects = [gw("gw-a", "a-1", "a-2"), gw("gw-b", "b-1")];
    expect(candidacyOf(node("a-2", { "raven.openyurt.io/gateway": "gw-a" }), objects)).toEqual({
      gateway: "gw-a",
      solo: false,
    });
    // Listed, unlabelled: the endpoint makes it a member and a candidate.
    expect(candidacyOf(node("b-1"), objects)).toEqual({ gateway: "gw-b", solo: false });
  });

  it("is null for a member no Gateway lists, and solo for a node no Gateway serves", () => {
    const objects = [gw("gw-a", "a-1")];
    expect(candidacyOf(node("a-9", { "raven.openyurt.io/gateway": "gw-a" }), objects)).toBeNull();
    expect(candidacyOf(node("kiosk-1"), objects)).toEqual({ gateway: "kiosk-1", solo: true });
    // A label naming a Gateway that does not exist: its own gateway, as the coordinator places it.
    expect(candidacyOf(node("x-1", { "raven.openyurt.io/gateway": "gw-gone" }), objects)).toEqual({
      gateway: "x-1",
      solo: true,
    });
  });

  it("skips what does not look like a Gateway rather than failing", () => {
    expect(
      candidacyOf(node("a-1"), [
        null,
        7,
        { metadata: {} },
        { metadata: { name: "gw-a" }, spec: { endpoints: [{}, { nodeName: "a-1" }] } },
      ]),
    ).toEqual({
      gateway: "gw-a",
      solo: false,
    });
  });
});
