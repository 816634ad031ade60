// The Gateway record, OpenYurt Raven's raven.openyurt.io/v1beta1 Gateway field for field (deploy/ holds the
// CRD; note the JSON key `Replicas`, capital R, as OpenYurt spells it) so that users' manifests carry over,
// plus `status.term`: the fencing term that only grows. Stored as JSON in the hub's KV (readable with any
// NATS tool); in Kubernetes it is the Gateway custom resource.
//
// Manifests are read strictly (parseGatewayManifest): an unknown or misspelled field is an error naming its
// path, OpenYurt's defaulting applies (nodeSelector, ports) and so does its validation webhook's every rule
// (tunnel Replicas <= 1, proxy Replicas <= proxy endpoints, one underNAT for all endpoints, an exposed
// Gateway not under NAT, publicIP an IP address), besides Raven's own (names, ports, duplicates). A
// v1alpha1 manifest is converted as OpenYurt converts it. The status of a manifest is the election's and is
// ignored. Records read back from KV (parseGatewayRecord) keep their status.
//
// Solo nodes (a node whose pool has no Gateway is its own gateway) get a record of their own, labelled
// `raven.openyurt.io/solo`, so that their gateway role is fenced by a term like every other.

export const GATEWAY_API_VERSION = "raven.openyurt.io/v1beta1";
/** The older version OpenYurt still serves: tunnel endpoints only, one active endpoint. Converted on read. */
export const GATEWAY_API_VERSION_ALPHA = "raven.openyurt.io/v1alpha1";
export const LABEL_NODEPOOL = "apps.openyurt.io/nodepool";
export const LABEL_GATEWAY = "raven.openyurt.io/gateway";
export const LABEL_SOLO = "raven.openyurt.io/solo";

export const EndpointType = { Proxy: "proxy", Tunnel: "tunnel" } as const;
export type EndpointType = (typeof EndpointType)[keyof typeof EndpointType];
export const ENDPOINT_TYPES: readonly EndpointType[] = [EndpointType.Proxy, EndpointType.Tunnel];

export const ExposeType = { None: "", PublicIP: "PublicIP", LoadBalancer: "LoadBalancer" } as const;
export type ExposeType = (typeof ExposeType)[keyof typeof ExposeType];

/** Raven's default ports: proxy endpoint 10262, tunnel (IPsec NAT-T) 4500. */
export const DEFAULT_PORT: Record<EndpointType, number> = { proxy: 10262, tunnel: 4500 };

export type Endpoint = {
  nodeName: string;
  type: EndpointType;
  port: number;
  underNAT: boolean;
  natType?: string;
  publicIP?: string;
  publicPort?: number;
  config?: Record<string, string>;
};

export type LabelSelectorRequirement = {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
};
/** A Kubernetes label selector (metav1.LabelSelector), as OpenYurt's nodeSelector is. */
export type LabelSelector = { matchLabels?: Record<string, string>; matchExpressions?: LabelSelectorRequirement[] };

export type GatewaySpec = {
  nodeSelector?: LabelSelector;
  proxyConfig: { Replicas: number; proxyHTTPPort?: string; proxyHTTPSPort?: string };
  tunnelConfig: { Replicas: number };
  endpoints: Endpoint[];
  exposeType: ExposeType;
};

export type NodeInfo = { nodeName: string; privateIP: string; subnets: string[] };

export type GatewayStatus = {
  nodes: NodeInfo[];
  activeEndpoints: Endpoint[];
  /** Fencing term: grows by one on every change of activeEndpoints; never decreases. */
  term: number;
  /** Why the election could not fill every replica, if it could not. */
  problem?: string;
  /** Why tunnel mode refuses this domain (its pod CIDRs overlap another domain's); proxy mode is unaffected. */
  tunnelProblem?: string;
};

export type Gateway = {
  apiVersion: typeof GATEWAY_API_VERSION;
  kind: "Gateway";
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: GatewaySpec;
  status: GatewayStatus;
};

export const emptyStatus = (): GatewayStatus => ({ nodes: [], activeEndpoints: [], term: 0 });

export function replicasOf(spec: GatewaySpec): Record<EndpointType, number> {
  return { proxy: spec.proxyConfig.Replicas, tunnel: spec.tunnelConfig.Replicas };
}

/** Raven's default proxy ports when a Gateway names none: kubelet read-only and 9445 over HTTP, kubelet and
 * node-exporter over HTTPS. */
export const DEFAULT_PROXY_HTTP_PORTS = "10255,9445";
export const DEFAULT_PROXY_HTTPS_PORTS = "10250,9100";

/** The node ports the proxy may reach through this Gateway: its proxyHTTPPort and proxyHTTPSPort lists. */
export function proxyPortsOf(spec: GatewaySpec): number[] {
  const lists = [
    spec.proxyConfig.proxyHTTPPort ?? DEFAULT_PROXY_HTTP_PORTS,
    spec.proxyConfig.proxyHTTPSPort ?? DEFAULT_PROXY_HTTPS_PORTS,
  ];
  return [...new Set(lists.flatMap((l) => l.split(",").map(Number)))].sort((a, b) => a - b);
}

export function isSolo(gw: Gateway): boolean {
  return gw.metadata.labels?.[LABEL_SOLO] === "true";
}

/** KV keys: user Gateways and solo records live apart so a Gateway named like a node never collides. */
export const gatewayKey = (name: string) => `gw.${name}`;
export const soloKey = (node: string) => `solo.${node}`;
export const keyOfGateway = (gw: Gateway) => (isSolo(gw) ? soloKey(gw.metadata.name) : gatewayKey(gw.metadata.name));

export function soloGateway(nodeName: string): Gateway {
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: "Gateway",
    metadata: { name: nodeName, labels: { [LABEL_SOLO]: "true" } },
    spec: {
      proxyConfig: { Replicas: 1 },
      tunnelConfig: { Replicas: 1 },
      endpoints: ENDPOINT_TYPES.map((type) => ({ nodeName, type, port: DEFAULT_PORT[type], underNAT: false })),
      exposeType: ExposeType.None,
      // As OpenYurt defaults every Gateway's, so that the record reads back as a manifest unchanged.
      nodeSelector: { matchLabels: { [LABEL_GATEWAY]: nodeName } },
    },
    status: emptyStatus(),
  };
}

/** The address of an active cloud (exposed) proxy endpoint (its publicIP), if the records name one: where the
 * cloud reaches edge nodes by name (`raven hosts`, the edge-tunnel-nodes ConfigMap). */
export function activeProxyAddress(records: readonly Gateway[]): string | undefined {
  for (const gw of records) {
    if (gw.spec.exposeType === "") continue;
    const ep = gw.status.activeEndpoints.find((e) => e.type === "proxy" && e.publicIP);
    if (ep) return ep.publicIP;
  }
  return undefined;
}
