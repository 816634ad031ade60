import { describe, expect, it } from "vitest";
import { findViolations, type Claim } from "../../../services/fleet/observer";

const claim = (node: string, start: number, end: number, over: Partial<Claim> = {}): Claim => ({
  node,
  gateway: "gw-a",
  domain: "edge-a",
  type: "proxy",
  term: 1,
  start,
  end,
  seq: 1,
  ...over,
});

describe("findViolations", () => {
  it("accepts back-to-back claims that only touch", () => {
    expect(findViolations([claim("a", 0, 100), claim("b", 100, 200)], () => 1)).toEqual([]);
  });

  it("reports two candidates acting active at once beyond replicas", () => {
    const v = findViolations([claim("a", 0, 150), claim("b", 100, 200)], () => 1);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ gateway: "gw-a", type: "proxy", at: 100, replicas: 1 });
    expect(v[0]!.nodes.sort()).toEqual(["a", "b"]);
  });

  it("allows as many overlapping claims as replicas", () => {
    expect(findViolations([claim("a", 0, 150), claim("b", 100, 200)], () => 2)).toEqual([]);
  });

  it("judges each Gateway and endpoint type on its own", () => {
    const claims = [
      claim("a", 0, 150),
      claim("b", 100, 200, { type: "tunnel" }),
      claim("c", 100, 200, { gateway: "gw-b" }),
    ];
    expect(findViolations(claims, () => 1)).toEqual([]);
  });
});
