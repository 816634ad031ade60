// The pure half of Kubernetes sync: Node/raven-cfg reading, a Gateway object as its record (validation,
// raven-cfg's modes), the mirrored status, Event changes and the edge-tunnel-nodes hosts map.
import { describe, expect, it } from "vitest";
import { readNode, type KubeNode, type KubeObject } from "../../../lib/kube";
import {
  activeChanges,
  gatewayFromObject,
  hostsMap,
  mirroredStatus,
  nodesByGateway,
  readRavenCfg,
  sameStatus,
} from "../../../services/coordinator/kube/objects";

const node = (
  name: string,
  labels: Record<string, string>,
  ip: string,
  podCIDR?: string,
  extra?: string,
): KubeObject => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: {
    name,
    labels,
    resourceVersion: "7",
    ...(extra ? { annotations: { "raven.openyurt.io/extra-allowed-source-cidrs": extra } } : {}),
  },
  spec: podCIDR ? { podCIDR } : {},
  status: {
    addresses: [
      { type: "Hostname", address: name },
      { type: "InternalIP", address: ip },
    ],
    conditions: [{ type: "Ready", status: "True" }],
  },
});

const gatewayObject = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: "raven.openyurt.io/v1beta1",
  kind: "Gateway",
  metadata: {
    name,
    uid: "u-1",
    resourceVersion: "12",
    generation: 2,
    creationTimestamp: "2026-12-07T00:00:00Z",
    annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" },
    managedFields: [],
  },
  spec,
  status: { nodes: [], activeEndpoints: [] },
});

const both = { l7: true, l3: true };

describe("reading objects", () => {
  it("reads a Node's labels, first InternalIP, podCIDR plus extra CIDRs, and Ready", () => {
    const n = readNode(
      node("a-1", { "apps.openyurt.io/nodepool": "a" }, "10.0.0.5", "10.244.1.0/24", "10.9.0.0/16, 10.8.0.0/16"),
    );
    expect(n).toEqual({
      name: "a-1",
      labels: { "apps.openyurt.io/nodepool": "a" },
      internalIP: "10.0.0.5",
      podCIDR: "10.244.1.0/24",
      subnets: ["10.244.1.0/24", "10.9.0.0/16", "10.8.0.0/16"],
      ready: true,
    });
    expect(readNode({ metadata: { name: "bare" } })).toMatchObject({
      internalIP: "",
      podCIDR: "",
      subnets: [],
      ready: false,
    });
    // Extra CIDRs without a podCIDR: subnets for the Gateway status, never the node's podCIDR.
    expect(readNode(node("x", {}, "10.0.0.6", undefined, "10.9.0.0/16"))).toMatchObject({
      podCIDR: "",
      subnets: ["10.9.0.0/16"],
    });
  });

  it("turns a mode on only for the string true, and both off without raven-cfg", () => {
    expect(readRavenCfg(undefined)).toEqual({ l7: false, l3: false });
    const cm = (data: Record<string, string>): KubeObject => ({ metadata: { name: "raven-cfg" }, data });
    expect(readRavenCfg(cm({ "enable-l7-proxy": "true", "enable-l3-tunnel": "True" }))).toEqual({
      l7: true,
      l3: false,
    });
  });
});

describe("a Gateway object as its record", () => {
  const spec = {
    proxyConfig: { Replicas: 2 },
    tunnelConfig: { Replicas: 1 },
    endpoints: [
      { nodeName: "a-1", type: "proxy", underNAT: true },
      { nodeName: "a-2", type: "proxy", underNAT: true },
      { nodeName: "a-1", type: "tunnel", underNAT: true },
    ],
  };

  it("drops server-set metadata and applies OpenYurt's defaults", () => {
    const gw = gatewayFromObject(gatewayObject("gw-a", spec), both);
    expect(gw.metadata).toEqual({ name: "gw-a" });
    expect(gw.spec.nodeSelector).toEqual({ matchLabels: { "raven.openyurt.io/gateway": "gw-a" } });
    expect(gw.spec.endpoints.map((e) => e.port)).toEqual([10262, 10262, 4500]);
    expect(gw.spec.proxyConfig.Replicas).toBe(2);
  });

  it("elects nothing of a mode raven-cfg turns off, and keeps its endpoints", () => {
    const gw = gatewayFromObject(gatewayObject("gw-a", spec), { l7: false, l3: true });
    expect(gw.spec.proxyConfig.Replicas).toBe(0);
    expect(gw.spec.tunnelConfig.Replicas).toBe(1);
    expect(gw.spec.endpoints).toHaveLength(3);
  });

  it("names the bad field of an invalid Gateway", () => {
    expect(() => gatewayFromObject(gatewayObject("gw-a", { ...spec, tunnelConfig: { Replicas: 2 } }), both)).toThrow(
      /spec\.tunnelConfig\.Replicas/,
    );
    expect(() => gatewayFromObject(gatewayObject("gw-a", { ...spec, exposeTyp: "PublicIP" }), both)).toThrow(
      /exposeTyp/,
    );
  });

  it("refuses an object that claims to be a solo record", () => {
    const o = gatewayObject("a-1", spec);
    o.metadata.labels = { "raven.openyurt.io/solo": "true" };
    expect(() => gatewayFromObject(o, both)).toThrow(/raven.openyurt.io\/solo/);
  });
});

describe("what is written back", () => {
  const nodes: KubeNode[] = [
    readNode(node("a-2", { "raven.openyurt.io/gateway": "gw-a" }, "192.168.1.12", "10.244.2.0/24")),
    readNode(node("a-1", { "raven.openyurt.io/gateway": "gw-a" }, "192.168.1.11", "10.244.1.0/24")),
    readNode(node("c-1", { "raven.openyurt.io/gateway": "gw-cloud" }, "10.0.0.11")),
    readNode(node("lone", {}, "192.168.1.11")),
  ];
  const gwA = gatewayFromObject(
    gatewayObject("gw-a", { endpoints: [{ nodeName: "a-1", type: "proxy" }], proxyConfig: { Replicas: 1 } }),
    both,
  );
  const gwCloud = gatewayFromObject(
    gatewayObject("gw-cloud", { endpoints: [{ nodeName: "c-1", type: "proxy" }], exposeType: "PublicIP" }),
    both,
  );

  it("lists the served Nodes sorted, and the record's actives with the mode flags", () => {
    const record = {
      ...gwA,
      status: { term: 3, nodes: [], activeEndpoints: [{ ...gwA.spec.endpoints[0]!, publicIP: "192.168.1.11" }] },
    };
    const served = nodesByGateway([gwA, gwCloud], nodes).get("gw-a")!;
    const st = mirroredStatus("gw-a", record, served, { l7: true, l3: false });
    expect(st.nodes).toEqual([
      { nodeName: "a-1", privateIP: "192.168.1.11", subnets: ["10.244.1.0/24"] },
      { nodeName: "a-2", privateIP: "192.168.1.12", subnets: ["10.244.2.0/24"] },
    ]);
    expect(st.activeEndpoints).toEqual([
      {
        nodeName: "a-1",
        type: "proxy",
        port: 10262,
        underNAT: false,
        publicIP: "192.168.1.11",
        config: { "enable-l7-proxy": "true", "enable-l3-tunnel": "false" },
      },
    ]);
    // What the API server hands back (other key order, no undefined members) compares equal.
    expect(sameStatus(JSON.parse(JSON.stringify({ activeEndpoints: st.activeEndpoints, nodes: st.nodes })), st)).toBe(
      true,
    );
    expect(sameStatus({ nodes: st.nodes, activeEndpoints: [] }, st)).toBe(false);
  });

  it("tells which endpoints were elected and lost", () => {
    const p = (nodeName: string) => ({ nodeName, type: "proxy" as const });
    expect(activeChanges([p("a-1")], [p("a-2")])).toEqual({ elected: ["proxy/a-2"], lost: ["proxy/a-1"] });
    expect(activeChanges([p("a-1")], [p("a-1")])).toEqual({ elected: [], lost: [] });
  });

  it("maps edge nodes to the proxy and cloud nodes to their InternalIP, lines sorted, as gateway-dns does", () => {
    const isCloud = (n: KubeNode) => n.name.startsWith("c-");
    expect(hostsMap(nodes, isCloud, both, "10.0.0.99")).toBe(
      ["10.0.0.11\tc-1", "10.0.0.99\ta-1", "10.0.0.99\ta-2", "10.0.0.99\tlone"].join("\n"),
    );
    expect(hostsMap(nodes, isCloud, { l7: false }, undefined)).toBe(
      ["10.0.0.11\tc-1", "192.168.1.11\ta-1", "192.168.1.11\tlone", "192.168.1.12\ta-2"].join("\n"),
    );
    // Proxy on, address unknown: nothing rather than edge names pointing into other networks.
    expect(hostsMap(nodes, isCloud, both, undefined)).toBeNull();
  });
});
