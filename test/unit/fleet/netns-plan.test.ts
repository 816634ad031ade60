// The pure netns plan: names, address allocation, validation, the ip command list, subnet picking.
import { describe, expect, it } from "vitest";
import { ErrorCode, NetnsError } from "../../../shared/errors";
import {
  IFNAMSIZ_MAX,
  netnsCommands,
  nsName,
  ownsLink,
  ownsNs,
  pickSubnetIndex,
  planNetns,
  usedSubnetIndexes,
  type NetnsInput,
} from "../../../services/fleet/netns-plan";
import { newNetnsPrefix, nsExec } from "../../../services/fleet/netns";

const node = (name: string, internalIP: string, candidate = false) => ({ name, internalIP, candidate });

const twoDomains: NetnsInput = {
  prefix: "rv3fa2c1",
  subnetIndex: 7,
  domains: [
    { domain: "edge-b", nodes: [node("b-2", "192.168.1.12"), node("b-1", "192.168.1.11", true)] },
    {
      domain: "edge-a",
      nodes: [node("a-1", "192.168.1.11", true), node("a-2", "192.168.1.12", true), node("a-3", "192.168.1.13")],
    },
    { domain: "solo", nodes: [node("solo-1", "10.0.0.1")] },
  ],
};

function planError(input: NetnsInput): NetnsError {
  try {
    planNetns(input);
  } catch (err) {
    expect(err).toBeInstanceOf(NetnsError);
    expect((err as NetnsError).code).toBe(ErrorCode.Netns);
    return err as NetnsError;
  }
  throw new Error("planNetns accepted a bad input");
}

describe("planNetns", () => {
  it("lays out bridge, namespaces, veths and addresses deterministically", () => {
    const plan = planNetns(twoDomains);
    expect(plan).toMatchObject({
      prefix: "rv3fa2c1",
      subnetIndex: 7,
      bridge: "rv3fa2c1br",
      hostIP: "198.18.7.1",
      subnet: "198.18.7.0/24",
    });
    expect(plan.domains.map((d) => [d.domain, d.ns, d.hostVeth])).toEqual([
      ["edge-a", "rv3fa2c1-edge-a", "rv3fa2c1h0"],
      ["edge-b", "rv3fa2c1-edge-b", "rv3fa2c1h1"],
      ["solo", "rv3fa2c1-solo", "rv3fa2c1h2"],
    ]);
    const [a, b, solo] = plan.domains;
    expect(a!.underlayIPs).toEqual({ "a-1": "198.18.7.10", "a-2": "198.18.7.11" });
    expect(a!.lanIPs).toEqual({ "a-1": "192.168.1.11", "a-2": "192.168.1.12", "a-3": "192.168.1.13" });
    expect(a!.domainIP).toBe("198.18.7.10");
    expect(b!.underlayIPs).toEqual({ "b-1": "198.18.7.12" });
    expect(b!.lanIPs).toEqual({ "b-1": "192.168.1.11", "b-2": "192.168.1.12" });
    // A domain without candidates still gets one underlay address of its own.
    expect(solo!.underlayIPs).toEqual({});
    expect(solo!.wanIPs).toEqual(["198.18.7.13"]);
    expect(solo!.domainIP).toBe("198.18.7.13");
    // Input order does not matter.
    expect(planNetns({ ...twoDomains, domains: [...twoDomains.domains].reverse() })).toEqual(plan);
  });

  it("keeps every interface name within IFNAMSIZ and namespace names legal", () => {
    const plan = planNetns({
      prefix: "abcdefghijk",
      subnetIndex: 0,
      domains: Array.from({ length: 120 }, (_, i) => ({ domain: `d${i}`, nodes: [node("n", "10.0.0.1", true)] })),
    });
    for (const name of [plan.bridge, ...plan.domains.map((d) => d.hostVeth)])
      expect(name.length).toBeLessThanOrEqual(IFNAMSIZ_MAX);
    const odd = nsName("rv000000", "Weird/Domain name with spaces and a very long tail that goes on");
    expect(odd).toMatch(/^rv000000-[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
    expect(odd.length).toBeLessThan(60);
    expect(nsName("rv000000", "a/b")).not.toBe(nsName("rv000000", "a_b"));
  });

  it("names the bad input", () => {
    const one = (nodes: { name: string; internalIP: string; candidate: boolean }[], subnetIndex = 7): NetnsInput => ({
      prefix: "rv3fa2c1",
      subnetIndex,
      domains: [{ domain: "edge-a", nodes }],
    });
    expect(planError(one([node("a-1", "192.168.1.11"), node("a-2", "192.168.1.11")])).message).toMatch(
      /edge-a: nodes a-1 and a-2 share internalIP 192\.168\.1\.11/,
    );
    expect(planError(one([node("a-1", "192.168.1.300")])).message).toMatch(
      /node a-1 internalIP "192\.168\.1\.300" is not an IPv4 address/,
    );
    expect(planError(one([node("a-1", "127.0.0.1")])).message).toMatch(/a-1.*not a unicast host address/);
    expect(planError(one([node("a-1", "198.18.7.20")])).message).toMatch(/underlay subnet 198\.18\.7\.0\/24/);
    expect(planError(one([node("a-1", "10.0.0.1"), node("a-1", "10.0.0.2")])).message).toMatch(/node a-1 listed twice/);
    expect(planError(one([], 256)).message).toMatch(/subnetIndex 256/);
    expect(planError({ ...twoDomains, prefix: "eth" + "0".repeat(12) }).message).toMatch(/prefix "eth0+"/);
    expect(planError({ ...twoDomains, prefix: "" }).message).toMatch(/prefix ""/);
    expect(planError({ ...twoDomains, domains: [twoDomains.domains[0]!, twoDomains.domains[0]!] }).message).toMatch(
      /domain edge-b: listed twice/,
    );
  });

  it("refuses more than 241 underlay addresses (.10-.250), counting one per candidate-less domain", () => {
    const domains = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ domain: `d${i}`, nodes: [node("n", "10.0.0.1")] }));
    expect(planNetns({ prefix: "rv000000", subnetIndex: 1, domains: domains(241) }).domains.at(-1)!.domainIP).toBe(
      "198.18.1.250",
    );
    expect(planError({ prefix: "rv000000", subnetIndex: 1, domains: domains(242) }).message).toMatch(
      /too many underlay addresses: the domains need 242/,
    );
    const big = [
      {
        domain: "big",
        nodes: Array.from({ length: 300 }, (_, i) => node(`n${i}`, `10.0.${i >> 8}.${(i & 255) + 1}`, true)),
      },
    ];
    expect(planError({ prefix: "rv000000", subnetIndex: 1, domains: big }).message).toMatch(/need 300/);
  });
});

describe("netnsCommands", () => {
  it("builds the bridge first, then each namespace with lo, veth, lan0, addresses and the default route", () => {
    const plan = planNetns({ prefix: "rv3fa2c1", subnetIndex: 7, domains: [twoDomains.domains[0]!] });
    const lines = netnsCommands(plan).map((c) => c.argv.join(" "));
    expect(lines).toEqual([
      "link add rv3fa2c1br type bridge",
      "addr add 198.18.7.1/24 dev rv3fa2c1br",
      "link set rv3fa2c1br up",
      "netns add rv3fa2c1-edge-b",
      "-n rv3fa2c1-edge-b link set lo up",
      "link add rv3fa2c1h0 type veth peer name wan0 netns rv3fa2c1-edge-b",
      "link set rv3fa2c1h0 master rv3fa2c1br",
      "link set rv3fa2c1h0 up",
      "-n rv3fa2c1-edge-b link add lan0 type dummy",
      "-n rv3fa2c1-edge-b link set lan0 up",
      "-n rv3fa2c1-edge-b addr add 192.168.1.11/32 dev lan0",
      "-n rv3fa2c1-edge-b addr add 192.168.1.12/32 dev lan0",
      "-n rv3fa2c1-edge-b addr add 198.18.7.10/24 dev wan0",
      "-n rv3fa2c1-edge-b link set wan0 up",
      "-n rv3fa2c1-edge-b route add default via 198.18.7.1 dev wan0",
    ]);
    expect(netnsCommands(plan).find((c) => c.fallback)?.fallback).toEqual([
      "-n",
      "rv3fa2c1-edge-b",
      "link",
      "add",
      "lan0",
      "type",
      "ifb",
    ]);
  });
});

describe("ownership and helpers", () => {
  it("owns only its bridge, its host veths and its namespaces", () => {
    expect(ownsLink("rv3fa2c1", "rv3fa2c1br")).toBe(true);
    expect(ownsLink("rv3fa2c1", "rv3fa2c1h12")).toBe(true);
    for (const other of ["rv3fa2c1", "rv3fa2c1x", "rv3fa2c1hbr", "rv3fa2c10br", "eth0", "rv3fa2c2br"])
      expect(ownsLink("rv3fa2c1", other)).toBe(false);
    expect(ownsNs("rv3fa2c1", "rv3fa2c1-edge-a")).toBe(true);
    expect(ownsNs("rv3fa2c1", "rv3fa2c10-edge-a")).toBe(false);
  });

  it("finds subnets overlapped by any root address, including wider prefixes", () => {
    const addrs = [
      { ifname: "lo", addr_info: [{ family: "inet", local: "127.0.0.1", prefixlen: 8 }] },
      {
        ifname: "x",
        addr_info: [
          { family: "inet", local: "198.18.3.1", prefixlen: 24 },
          { family: "inet6", local: "::1", prefixlen: 128 },
        ],
      },
      { ifname: "y", addr_info: [{ family: "inet", local: "198.18.9.77", prefixlen: 23 }] },
      { ifname: "z", addr_info: [{ family: "inet", local: "198.19.0.1", prefixlen: 16 }] },
    ];
    expect([...usedSubnetIndexes(addrs)].sort((a, b) => a - b)).toEqual([3, 8, 9]);
    expect(usedSubnetIndexes([{ addr_info: [{ family: "inet", local: "198.16.0.1", prefixlen: 14 }] }]).size).toBe(256);
    expect(usedSubnetIndexes("garbage").size).toBe(0);
    expect(pickSubnetIndex(new Set([254, 255, 0]), 254)).toBe(1);
    expect(pickSubnetIndex(new Set(Array.from({ length: 256 }, (_, i) => i)), 5)).toBeUndefined();
  });

  it("makes rv + 6 hex prefixes and ip netns exec argvs", () => {
    for (let i = 0; i < 20; i++) expect(newNetnsPrefix()).toMatch(/^rv[0-9a-f]{6}$/);
    expect(nsExec("rv000000-a", ["node", "-e", "1"])).toEqual(["ip", "netns", "exec", "rv000000-a", "node", "-e", "1"]);
  });
});
