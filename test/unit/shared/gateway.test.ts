import { describe, expect, it } from "vitest";
import { ErrorCode, TopologyError } from "../../../shared/errors";
import {
  DEFAULT_PORT,
  GATEWAY_API_VERSION,
  LABEL_SOLO,
  isSolo,
  keyOfGateway,
  replicasOf,
  soloGateway,
} from "../../../shared/gateway";
import { parseGatewayManifest, parseGatewayRecord } from "../../../shared/gateway-manifest";

/** The shape of an OpenYurt Raven v1beta1 Gateway as `kubectl get gateway -o json` prints it. */
const openYurtGateway = () => ({
  apiVersion: "raven.openyurt.io/v1beta1",
  kind: "Gateway",
  metadata: {
    name: "gw-hangzhou",
    labels: { "app.kubernetes.io/managed-by": "yurt-manager" },
    annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" },
    creationTimestamp: "2026-01-01T00:00:00Z",
    generation: 3,
    resourceVersion: "123456",
    uid: "0b7c5a1e-5a8c-4f7e-9d7b-3b0f2d2f7a11",
  },
  spec: {
    nodeSelector: { matchLabels: { "apps.openyurt.io/nodepool": "hangzhou" } },
    proxyConfig: { Replicas: 2, proxyHTTPPort: "10255,9445", proxyHTTPSPort: "10250,9100" },
    tunnelConfig: { Replicas: 1 },
    endpoints: [
      {
        nodeName: "hz-node-1",
        type: "proxy",
        port: 10262,
        underNAT: false,
        publicIP: "47.98.1.10",
        config: { "raven.openyurt.io/proxy-server-exposed-ports": "10262" },
      },
      { nodeName: "hz-node-1", type: "tunnel", port: 4500, underNAT: false, publicIP: "47.98.1.10", config: {} },
      { nodeName: "hz-node-2", type: "proxy", port: 10262, underNAT: false, natType: "Symmetric", publicPort: 31000 },
    ],
    exposeType: "PublicIP",
  },
  status: {
    nodes: [{ nodeName: "hz-node-1", privateIP: "172.16.1.10", subnets: ["10.244.1.0/24"] }],
    activeEndpoints: [{ nodeName: "hz-node-1", type: "proxy", port: 10262, underNAT: false }],
  },
});

function topologyError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TopologyError);
    expect((err as TopologyError).code).toBe(ErrorCode.Topology);
    return (err as Error).message;
  }
  throw new Error("expected a TopologyError");
}

const withSpec = (spec: Record<string, unknown>) => ({ metadata: { name: "gw-a" }, spec });

describe("parseGatewayManifest", () => {
  it("accepts a real OpenYurt Raven v1beta1 Gateway and keeps its spec", () => {
    const gw = parseGatewayManifest(openYurtGateway());
    expect(gw.apiVersion).toBe(GATEWAY_API_VERSION);
    expect(gw.kind).toBe("Gateway");
    expect(gw.metadata).toEqual({
      name: "gw-hangzhou",
      labels: { "app.kubernetes.io/managed-by": "yurt-manager" },
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" },
    });
    expect(gw.spec).toEqual({
      nodeSelector: { matchLabels: { "apps.openyurt.io/nodepool": "hangzhou" } },
      proxyConfig: { Replicas: 2, proxyHTTPPort: "10255,9445", proxyHTTPSPort: "10250,9100" },
      tunnelConfig: { Replicas: 1 },
      endpoints: [
        {
          nodeName: "hz-node-1",
          type: "proxy",
          port: 10262,
          underNAT: false,
          publicIP: "47.98.1.10",
          config: { "raven.openyurt.io/proxy-server-exposed-ports": "10262" },
        },
        { nodeName: "hz-node-1", type: "tunnel", port: 4500, underNAT: false, publicIP: "47.98.1.10", config: {} },
        { nodeName: "hz-node-2", type: "proxy", port: 10262, underNAT: false, natType: "Symmetric", publicPort: 31000 },
      ],
      exposeType: "PublicIP",
    });
    expect(replicasOf(gw.spec)).toEqual({ proxy: 2, tunnel: 1 });
  });

  it("ignores the manifest's status: the election owns it", () => {
    expect(parseGatewayManifest(openYurtGateway()).status).toEqual({ nodes: [], activeEndpoints: [], term: 0 });
  });

  it("defaults ports (none or 0), Replicas, exposeType and the nodeSelector as OpenYurt does", () => {
    const gw = parseGatewayManifest({
      metadata: { name: "gw-a" },
      spec: {
        endpoints: [
          { nodeName: "n1", type: "proxy" },
          { nodeName: "n1", type: "tunnel", port: 0 },
        ],
      },
    });
    expect(DEFAULT_PORT).toEqual({ proxy: 10262, tunnel: 4500 });
    expect(gw.spec.endpoints).toEqual([
      { nodeName: "n1", type: "proxy", port: 10262, underNAT: false },
      { nodeName: "n1", type: "tunnel", port: 4500, underNAT: false },
    ]);
    expect(gw.spec.proxyConfig).toEqual({ Replicas: 1 });
    expect(gw.spec.tunnelConfig).toEqual({ Replicas: 1 });
    expect(gw.spec.exposeType).toBe("");
    expect(gw.spec.nodeSelector).toEqual({ matchLabels: { "raven.openyurt.io/gateway": "gw-a" } });
    expect(parseGatewayManifest({ metadata: { name: "bare" } }).spec.endpoints).toEqual([]);
  });

  it("accepts every exposeType and replicas at their limits", () => {
    for (const exposeType of ["", "PublicIP", "LoadBalancer"]) {
      expect(parseGatewayManifest(withSpec({ exposeType })).spec.exposeType).toBe(exposeType);
    }
    // `exposeType:` left empty in YAML is null: the same as not set
    expect(parseGatewayManifest(withSpec({ exposeType: null })).spec.exposeType).toBe("");
    const endpoints = Array.from({ length: 16 }, (_, i) => ({ nodeName: `n${i}`, type: "proxy" }));
    const gw = parseGatewayManifest(
      withSpec({ proxyConfig: { Replicas: 16 }, tunnelConfig: { Replicas: 0 }, endpoints }),
    );
    expect(replicasOf(gw.spec)).toEqual({ proxy: 16, tunnel: 0 });
  });

  it("rejects more than one tunnel replica", () => {
    expect(topologyError(() => parseGatewayManifest(withSpec({ tunnelConfig: { Replicas: 2 } })))).toBe(
      "gateway gw-a.spec.tunnelConfig.Replicas: must be an integer 0..1",
    );
  });

  it("rejects bad proxy replicas", () => {
    for (const replicas of [17, -1, 1.5, "1", true]) {
      expect(topologyError(() => parseGatewayManifest(withSpec({ proxyConfig: { Replicas: replicas } })))).toBe(
        "gateway gw-a.spec.proxyConfig.Replicas: must be an integer 0..16",
      );
    }
  });

  it("rejects an endpoint listed twice (same node and type)", () => {
    const spec = {
      endpoints: [
        { nodeName: "n1", type: "proxy" },
        { nodeName: "n2", type: "proxy" },
        { nodeName: "n1", type: "proxy", port: 1 },
      ],
    };
    expect(topologyError(() => parseGatewayManifest(withSpec(spec)))).toBe(
      "gateway gw-a.spec.endpoints: lists proxy endpoint n1 twice",
    );
  });

  it("rejects a bad exposeType", () => {
    for (const exposeType of ["NodePort", "publicip", "LoadBalancer ", 1, false]) {
      expect(topologyError(() => parseGatewayManifest(withSpec({ exposeType })))).toBe(
        'gateway gw-a.spec.exposeType: must be "", "PublicIP" or "LoadBalancer"',
      );
    }
  });

  it("rejects bad port lists, naming the field", () => {
    for (const field of ["proxyHTTPPort", "proxyHTTPSPort"]) {
      for (const list of ["10250,", ",10250", "10250 9100", "10250;9100", "abc", "", "123456", 10250, ["10250"]]) {
        const msg = topologyError(() => parseGatewayManifest(withSpec({ proxyConfig: { [field]: list } })));
        expect(msg, JSON.stringify(list)).toBe(
          `gateway gw-a.spec.proxyConfig.${field}: must be a comma-separated port list like "10250,9100"`,
        );
      }
    }
  });

  // gateway.ts parsePortList checks the shape with /^\d{1,5}(,\d{1,5})*$/ only, so "0" and "70000" pass.
  it("rejects ports outside 1..65535 in a port list", () => {
    for (const list of ["70000", "10250,0", "65536"]) {
      expect(() => parseGatewayManifest(withSpec({ proxyConfig: { proxyHTTPPort: list } })), list).toThrow(
        TopologyError,
      );
    }
  });

  it("rejects bad endpoints, naming the endpoint", () => {
    const bad: [unknown, string][] = [
      [{ nodeName: "n1", type: "vpn" }, 'gateway gw-a.spec.endpoints[0].type: must be "proxy" or "tunnel"'],
      [{ type: "proxy" }, "gateway gw-a.spec.endpoints[0].nodeName: must be a node name, got undefined"],
      [{ nodeName: "N1", type: "proxy" }, 'gateway gw-a.spec.endpoints[0].nodeName: must be a node name, got "N1"'],
      [{ nodeName: "n1", type: "proxy", port: -1 }, "gateway gw-a.spec.endpoints[0].port: must be a port number"],
      [{ nodeName: "n1", type: "proxy", port: 65536 }, "gateway gw-a.spec.endpoints[0].port: must be a port number"],
      [{ nodeName: "n1", type: "proxy", port: "10262" }, "gateway gw-a.spec.endpoints[0].port: must be a port number"],
      [{ nodeName: "n1", type: "proxy", publicIP: 1 }, "gateway gw-a.spec.endpoints[0].publicIP: must be a string"],
      [
        { nodeName: "n1", type: "proxy", publicIP: "47.98.1" },
        'gateway gw-a.spec.endpoints[0].publicIP: must be an IP address, got "47.98.1"',
      ],
      [
        { nodeName: "n1", type: "proxy", underNAT: "yes" },
        "gateway gw-a.spec.endpoints[0].underNAT: must be true or false",
      ],
      [
        { nodeName: "n1", type: "proxy", publicPort: "1" },
        "gateway gw-a.spec.endpoints[0].publicPort: must be a port number",
      ],
      [
        { nodeName: "n1", type: "proxy", config: { a: 1 } },
        "gateway gw-a.spec.endpoints[0].config: must map strings to strings",
      ],
      ["n1", "gateway gw-a.spec.endpoints[0]: must be an object"],
    ];
    for (const [endpoint, message] of bad) {
      expect(topologyError(() => parseGatewayManifest(withSpec({ endpoints: [endpoint] })))).toBe(message);
    }
    expect(topologyError(() => parseGatewayManifest(withSpec({ endpoints: {} })))).toBe(
      "gateway gw-a.spec.endpoints: must be a list",
    );
  });

  it("rejects a wrong apiVersion, kind or name, naming where", () => {
    const ok = openYurtGateway();
    expect(
      topologyError(() => parseGatewayManifest({ ...ok, apiVersion: "raven.openyurt.io/v2" }, "gateways[2]")),
    ).toBe(`gateways[2].apiVersion: must be ${GATEWAY_API_VERSION} or raven.openyurt.io/v1alpha1`);
    expect(topologyError(() => parseGatewayManifest({ ...ok, kind: "Pod" }))).toBe("gateway.kind: must be Gateway");
    expect(topologyError(() => parseGatewayManifest({ ...ok, metadata: {} }))).toBe(
      "gateway.metadata.name: must be a DNS subdomain name, got undefined",
    );
    expect(topologyError(() => parseGatewayManifest({ spec: {} }))).toBe("gateway.metadata: must be an object");
    expect(topologyError(() => parseGatewayManifest(null))).toBe("gateway: must be an object");
    expect(topologyError(() => parseGatewayManifest({ metadata: { name: "gw-a" }, spec: [] }))).toBe(
      "gateway gw-a.spec: must be an object",
    );
  });
});

describe("parseGatewayManifest is strict", () => {
  it("names an unknown or misspelled field, and the field it likely meant", () => {
    const cases: [Record<string, unknown>, string][] = [
      [
        withSpec({ proxyConfig: { replicas: 2 } }),
        "gateway gw-a.spec.proxyConfig.replicas: unknown field (did you mean Replicas?); the fields here are Replicas, proxyHTTPPort, proxyHTTPSPort",
      ],
      [
        withSpec({ exposeTyp: "PublicIP" }),
        "gateway gw-a.spec.exposeTyp: unknown field (did you mean exposeType?); the fields here are nodeSelector, proxyConfig, tunnelConfig, endpoints, exposeType",
      ],
      [
        withSpec({ endpoints: [{ nodeName: "n1", type: "proxy", publicIp: "1.2.3.4" }] }),
        "gateway gw-a.spec.endpoints[0].publicIp: unknown field (did you mean publicIP?); the fields here are nodeName, type, port, underNAT, natType, publicIP, publicPort, config",
      ],
      [
        { metadata: { name: "gw-a" }, spec: {}, extra: 1 },
        "gateway.extra: unknown field; the fields here are apiVersion, kind, metadata, spec, status",
      ],
      [
        { metadata: { name: "gw-a", labls: {} } },
        "gateway gw-a.metadata.labls: unknown field (did you mean labels?); the fields here are name, labels, annotations",
      ],
    ];
    for (const [raw, message] of cases) expect(topologyError(() => parseGatewayManifest(raw))).toBe(message);
  });

  it("refuses a namespace: Gateways are cluster-scoped", () => {
    expect(topologyError(() => parseGatewayManifest({ metadata: { name: "gw-a", namespace: "default" } }))).toBe(
      "gateway gw-a.metadata.namespace: must not be set: Gateways are cluster-scoped",
    );
  });

  it("keeps a nodeSelector given, with matchExpressions checked", () => {
    const nodeSelector = {
      matchLabels: { "apps.openyurt.io/nodepool": "hz" },
      matchExpressions: [
        { key: "zone", operator: "In", values: ["a"] },
        { key: "gpu", operator: "DoesNotExist" },
      ],
    };
    expect(parseGatewayManifest(withSpec({ nodeSelector })).spec.nodeSelector).toEqual(nodeSelector);
    const bad = { matchExpressions: [{ key: "zone", operator: "In", values: [] }] };
    expect(topologyError(() => parseGatewayManifest(withSpec({ nodeSelector: bad })))).toBe(
      "gateway gw-a.spec.nodeSelector.matchExpressions[0].values: must not be empty with In",
    );
  });
});

describe("parseGatewayManifest applies OpenYurt's validation", () => {
  const ep = (nodeName: string, type: string, more: Record<string, unknown> = {}) => ({ nodeName, type, ...more });

  it("one underNAT for every endpoint", () => {
    const spec = { endpoints: [ep("n1", "proxy", { underNAT: true }), ep("n2", "proxy")] };
    expect(topologyError(() => parseGatewayManifest(withSpec(spec)))).toBe(
      "gateway gw-a.spec.endpoints[1].underNAT: must be the same for every endpoint (endpoints[0] says true)",
    );
  });

  it("an exposed Gateway is not under NAT", () => {
    const spec = { exposeType: "LoadBalancer", endpoints: [ep("n1", "proxy", { underNAT: true })] };
    expect(topologyError(() => parseGatewayManifest(withSpec(spec)))).toBe(
      "gateway gw-a.spec.endpoints[0].underNAT: must be false: the Gateway is exposed (exposeType LoadBalancer), so it cannot be under NAT",
    );
  });

  it("no more proxy Replicas than proxy endpoints (above one)", () => {
    const spec = {
      proxyConfig: { Replicas: 3 },
      endpoints: [ep("n1", "proxy"), ep("n2", "proxy"), ep("n3", "tunnel")],
    };
    expect(topologyError(() => parseGatewayManifest(withSpec(spec)))).toBe(
      "gateway gw-a.spec.proxyConfig.Replicas: is 3, but the Gateway lists 2 proxy endpoints",
    );
    // One replica with no endpoint yet is allowed, as OpenYurt allows it.
    expect(parseGatewayManifest(withSpec({ proxyConfig: { Replicas: 1 } })).spec.endpoints).toEqual([]);
  });

  it("converts a v1alpha1 Gateway as OpenYurt does: tunnel endpoints on 4500, both Replicas 1", () => {
    const gw = parseGatewayManifest({
      apiVersion: "raven.openyurt.io/v1alpha1",
      kind: "Gateway",
      metadata: { name: "gw-old" },
      spec: {
        endpoints: [
          { nodeName: "n1", underNAT: true, publicIP: "1.2.3.4" },
          { nodeName: "n2", underNAT: true },
        ],
      },
      status: { activeEndpoint: { nodeName: "n1" } },
    });
    expect(gw.apiVersion).toBe(GATEWAY_API_VERSION);
    expect(gw.spec.endpoints).toEqual([
      { nodeName: "n1", type: "tunnel", port: 4500, underNAT: true, publicIP: "1.2.3.4" },
      { nodeName: "n2", type: "tunnel", port: 4500, underNAT: true },
    ]);
    expect(replicasOf(gw.spec)).toEqual({ proxy: 1, tunnel: 1 });
    expect(
      topologyError(() =>
        parseGatewayManifest({
          apiVersion: "raven.openyurt.io/v1alpha1",
          metadata: { name: "gw-old" },
          spec: { endpoints: [{ nodeName: "n1", type: "proxy" }] },
        }),
      ),
    ).toBe(
      "gateway gw-old.spec.endpoints[0].type: unknown field; the fields here are nodeName, publicIP, underNAT, config",
    );
  });
});

describe("parseGatewayRecord", () => {
  const record = () => ({
    ...parseGatewayManifest(openYurtGateway()),
    status: {
      term: 7,
      activeEndpoints: [
        { nodeName: "hz-node-1", type: "proxy", port: 10262, underNAT: false },
        { nodeName: "hz-node-1", type: "tunnel", port: 4500, underNAT: false },
      ],
      nodes: [{ nodeName: "hz-node-1", privateIP: "172.16.1.10", subnets: ["10.244.1.0/24"] }],
      problem: "proxy replica 2 of 2 unfilled",
    },
  });

  it("keeps status.term, activeEndpoints, nodes and problem", () => {
    const gw = parseGatewayRecord(JSON.parse(JSON.stringify(record())), "kv gw.gw-hangzhou");
    expect(gw.status).toEqual(record().status);
    expect(gw.spec).toEqual(parseGatewayManifest(openYurtGateway()).spec);
  });

  it("defaults a missing status to term 0 and nothing active", () => {
    const { status: _dropped, ...noStatus } = record();
    expect(parseGatewayRecord(noStatus, "kv").status).toEqual({ term: 0, activeEndpoints: [], nodes: [] });
  });

  it("rejects a bad term or active endpoint, naming where", () => {
    for (const term of [-1, 1.5, "7"]) {
      expect(topologyError(() => parseGatewayRecord({ ...record(), status: { term } }, "kv gw.x"))).toBe(
        "kv gw.x.status.term: must be a non-negative integer",
      );
    }
    const badActive = { ...record(), status: { term: 1, activeEndpoints: [{ nodeName: "hz-node-1", type: "vpn" }] } };
    expect(topologyError(() => parseGatewayRecord(badActive, "kv gw.x"))).toBe(
      'kv gw.x.status.activeEndpoints[0].type: must be "proxy" or "tunnel"',
    );
    const badNodes = {
      ...record(),
      status: { term: 1, nodes: [{ nodeName: "hz-node-1", privateIP: 7, subnets: [] }] },
    };
    expect(topologyError(() => parseGatewayRecord(badNodes, "kv gw.x"))).toBe(
      "kv gw.x.status.nodes[0].privateIP: must be a string",
    );
  });

  it("round-trips a solo record, which stays solo", () => {
    const solo = soloGateway("kiosk-1");
    solo.status.term = 4;
    const back = parseGatewayRecord(JSON.parse(JSON.stringify(solo)), "kv solo.kiosk-1");
    expect(back).toEqual(solo);
    expect(isSolo(back)).toBe(true);
    expect(keyOfGateway(back)).toBe("solo.kiosk-1");
  });
});

describe("soloGateway", () => {
  it("is a one-node Gateway with both endpoint types on default ports, labelled solo", () => {
    const gw = soloGateway("kiosk-1");
    expect(gw.metadata).toEqual({ name: "kiosk-1", labels: { [LABEL_SOLO]: "true" } });
    expect(gw.spec.endpoints).toEqual([
      { nodeName: "kiosk-1", type: "proxy", port: 10262, underNAT: false },
      { nodeName: "kiosk-1", type: "tunnel", port: 4500, underNAT: false },
    ]);
    expect(replicasOf(gw.spec)).toEqual({ proxy: 1, tunnel: 1 });
    expect(gw.status).toEqual({ nodes: [], activeEndpoints: [], term: 0 });
    expect(isSolo(parseGatewayManifest(openYurtGateway()))).toBe(false);
    expect(keyOfGateway(parseGatewayManifest(openYurtGateway()))).toBe("gw.gw-hangzhou");
  });
});
