// The election rule as a pure function: spec-order fill, stickiness, replicas per type, and the shortfall
// message that explains an unfilled election.
import { describe, expect, it } from "vitest";
import { electActive, sameEndpoints, shortfall } from "../../../statecharts/election";
import type { Endpoint } from "../../../shared/gateway";
import { both, ep, keys } from "./fixtures";

const one = { proxy: 1, tunnel: 1 } as const;
const healthy = (...names: string[]) => new Set(names);

describe("electActive", () => {
  it("fills the replicas in spec order when nobody is active", () => {
    const endpoints = [ep("a"), ep("b"), ep("c")];
    const out = electActive({
      endpoints,
      replicas: { proxy: 2, tunnel: 1 },
      healthy: healthy("a", "b", "c"),
      current: [],
    });
    expect(keys(out)).toEqual(["proxy/a", "proxy/b"]);
  });

  it("skips unhealthy candidates while filling", () => {
    const endpoints = [ep("a"), ep("b"), ep("c")];
    const out = electActive({ endpoints, replicas: { proxy: 2, tunnel: 1 }, healthy: healthy("c", "a"), current: [] });
    expect(keys(out)).toEqual(["proxy/a", "proxy/c"]);
  });

  it("is deterministic: the same facts in any order give the same answer", () => {
    const endpoints = both("a", "b", "c");
    const replicas = { proxy: 2, tunnel: 1 };
    const first = electActive({ endpoints, replicas, healthy: healthy("a", "b", "c"), current: [ep("c")] });
    const again = electActive({ endpoints, replicas, healthy: healthy("c", "b", "a"), current: [ep("c")] });
    expect(keys(again)).toEqual(keys(first));
    expect(keys(first)).toEqual(["proxy/a", "tunnel/a", "proxy/c"]);
  });

  it("is sticky: a healthy active is never preempted by an earlier spec entry", () => {
    const endpoints = [ep("a"), ep("b"), ep("c")];
    const out = electActive({ endpoints, replicas: one, healthy: healthy("a", "b", "c"), current: [ep("c")] });
    expect(keys(out)).toEqual(["proxy/c"]);
  });

  it("keeps the sticky active and fills the other replicas in spec order, returning spec order", () => {
    const endpoints = [ep("a"), ep("b"), ep("c")];
    const out = electActive({
      endpoints,
      replicas: { proxy: 2, tunnel: 0 },
      healthy: healthy("a", "b", "c"),
      current: [ep("c")],
    });
    expect(keys(out)).toEqual(["proxy/a", "proxy/c"]);
  });

  it("keeps at most `replicas` of the current actives, the first ones listed", () => {
    const endpoints = [ep("a"), ep("b"), ep("c")];
    const out = electActive({ endpoints, replicas: one, healthy: healthy("a", "b", "c"), current: [ep("b"), ep("c")] });
    expect(keys(out)).toEqual(["proxy/b"]);
  });

  it("respects replicas per type: proxy and tunnel are elected independently", () => {
    const endpoints = [ep("a"), ep("b"), ep("c"), ep("a", "tunnel"), ep("b", "tunnel")];
    const out = electActive({
      endpoints,
      replicas: { proxy: 3, tunnel: 1 },
      healthy: healthy("a", "b", "c"),
      current: [ep("b", "tunnel")],
    });
    expect(keys(out)).toEqual(["proxy/a", "proxy/b", "proxy/c", "tunnel/b"]);
  });

  it("does not carry stickiness across types: an active proxy is not a sticky tunnel", () => {
    const endpoints = both("a", "b");
    const out = electActive({ endpoints, replicas: one, healthy: healthy("a", "b"), current: [ep("b", "proxy")] });
    expect(keys(out)).toEqual(["tunnel/a", "proxy/b"]);
  });

  it("elects nobody of a type with zero replicas", () => {
    const out = electActive({
      endpoints: both("a", "b"),
      replicas: { proxy: 0, tunnel: 1 },
      healthy: healthy("a", "b"),
      current: [ep("a")],
    });
    expect(keys(out)).toEqual(["tunnel/a"]);
  });

  it("replaces an unhealthy active", () => {
    const endpoints = [ep("a"), ep("b")];
    const out = electActive({ endpoints, replicas: one, healthy: healthy("b"), current: [ep("a")] });
    expect(keys(out)).toEqual(["proxy/b"]);
  });

  it("drops an active that was removed from the spec even if it is healthy", () => {
    const endpoints = [ep("b"), ep("c")];
    const out = electActive({ endpoints, replicas: one, healthy: healthy("x", "b", "c"), current: [ep("x")] });
    expect(keys(out)).toEqual(["proxy/b"]);
  });

  it("drops an active whose type was removed from the spec for that node", () => {
    const endpoints = [ep("a", "proxy"), ep("b", "tunnel")];
    const out = electActive({ endpoints, replicas: one, healthy: healthy("a", "b"), current: [ep("a", "tunnel")] });
    expect(keys(out)).toEqual(["proxy/a", "tunnel/b"]);
  });

  it("elects nobody when nobody is healthy", () => {
    expect(electActive({ endpoints: both("a", "b"), replicas: one, healthy: healthy(), current: both("a") })).toEqual(
      [],
    );
  });

  it("returns the spec's endpoint objects, not the stale copies in `current`", () => {
    const stale: Endpoint = { ...ep("a"), port: 1, publicIP: "192.0.2.1" };
    const out = electActive({ endpoints: [ep("a")], replicas: one, healthy: healthy("a"), current: [stale] });
    expect(out).toEqual([ep("a")]);
  });
});

describe("sameEndpoints", () => {
  it("ignores order", () => {
    expect(sameEndpoints([ep("a"), ep("b", "tunnel")], [ep("b", "tunnel"), ep("a")])).toBe(true);
  });

  it("compares node and type only", () => {
    expect(sameEndpoints([ep("a")], [{ ...ep("a"), port: 9 }])).toBe(true);
    expect(sameEndpoints([ep("a", "proxy")], [ep("a", "tunnel")])).toBe(false);
    expect(sameEndpoints([ep("a")], [ep("b")])).toBe(false);
  });

  it("differs when the lengths differ", () => {
    expect(sameEndpoints([ep("a")], [ep("a"), ep("a", "tunnel")])).toBe(false);
    expect(sameEndpoints([], [])).toBe(true);
  });
});

describe("shortfall", () => {
  it("is undefined when every wanted replica is filled", () => {
    expect(shortfall(both("a"), one, both("a", "b"))).toBeUndefined();
  });

  it("names the missing type with have/want", () => {
    expect(shortfall([ep("a", "tunnel")], one, both("a", "b"))).toBe("no healthy candidate for proxy 0/1");
  });

  it("lists every short type, proxy first", () => {
    expect(shortfall([ep("a")], { proxy: 2, tunnel: 1 }, both("a", "b"))).toBe(
      "no healthy candidate for proxy 1/2, tunnel 0/1",
    );
  });

  it("wants no more than the spec lists", () => {
    expect(shortfall([ep("a"), ep("b")], { proxy: 3, tunnel: 1 }, [ep("a"), ep("b")])).toBeUndefined();
    expect(shortfall([ep("a")], { proxy: 3, tunnel: 1 }, [ep("a"), ep("b")])).toBe(
      "no healthy candidate for proxy 1/2",
    );
  });

  it("wants nothing for zero replicas or an empty spec", () => {
    expect(shortfall([], { proxy: 0, tunnel: 0 }, both("a"))).toBeUndefined();
    expect(shortfall([], one, [])).toBeUndefined();
  });

  it("agrees with electActive: an election that finds too few candidates explains itself", () => {
    const endpoints = both("a", "b");
    const active = electActive({ endpoints, replicas: { proxy: 2, tunnel: 1 }, healthy: healthy("b"), current: [] });
    expect(shortfall(active, { proxy: 2, tunnel: 1 }, endpoints)).toBe("no healthy candidate for proxy 1/2");
  });
});
