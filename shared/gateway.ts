// The Gateway record, compatible in shape with OpenYurt Raven's raven.openyurt.io/v1beta1 Gateway so that
// users' manifests carry over, plus `status.term`: the fencing term that only grows. Stored as JSON in the
// hub's KV (readable with any NATS tool); in Kubernetes it would be the Gateway custom resource.
//
// Solo nodes (a node whose pool has no Gateway is its own gateway) get a record of their own, labelled
// `raven.openyurt.io/solo`, so that their gateway role is fenced by a term like every other.
import { isObjectName } from "./protocol/subjects";
import { TopologyError } from "./errors";

export const GATEWAY_API_VERSION = "raven.openyurt.io/v1beta1";
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

export type GatewaySpec = {
  nodeSelector?: { matchLabels?: Record<string, string> };
  proxyConfig: { replicas: number; proxyHTTPPort?: string; proxyHTTPSPort?: string };
  tunnelConfig: { replicas: number };
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
  metadata: { name: string; labels?: Record<string, string> };
  spec: GatewaySpec;
  status: GatewayStatus;
};

export const emptyStatus = (): GatewayStatus => ({ nodes: [], activeEndpoints: [], term: 0 });

export function replicasOf(spec: GatewaySpec): Record<EndpointType, number> {
  return { proxy: spec.proxyConfig.replicas, tunnel: spec.tunnelConfig.replicas };
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
      proxyConfig: { replicas: 1 },
      tunnelConfig: { replicas: 1 },
      endpoints: ENDPOINT_TYPES.map((type) => ({ nodeName, type, port: DEFAULT_PORT[type], underNAT: false })),
      exposeType: ExposeType.None,
    },
    status: emptyStatus(),
  };
}

// --- parsing user manifests ---------------------------------------------------------------------------------

type Raw = Record<string, unknown>;
const isObj = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);

function need(cond: boolean, where: string, what: string): asserts cond {
  if (!cond) throw new TopologyError(`${where}: ${what}`);
}

function parseReplicas(raw: unknown, where: string, max: number, dflt: number): number {
  if (raw === undefined) return dflt;
  need(
    typeof raw === "number" && Number.isInteger(raw) && raw >= 0 && raw <= max,
    where,
    `must be an integer 0..${max}`,
  );
  return raw;
}

function parsePortList(raw: unknown, where: string): string | undefined {
  if (raw === undefined) return undefined;
  need(
    typeof raw === "string" && /^\d{1,5}(,\d{1,5})*$/.test(raw),
    where,
    'must be a comma-separated port list like "10250,9100"',
  );
  for (const port of raw.split(","))
    need(Number(port) >= 1 && Number(port) <= 65535, where, `port ${port} is outside 1..65535`);
  return raw;
}

function parseEndpoint(raw: unknown, where: string): Endpoint {
  need(isObj(raw), where, "must be an object");
  need(isObjectName(raw.nodeName), `${where}.nodeName`, `must be a node name, got ${JSON.stringify(raw.nodeName)}`);
  need(raw.type === "proxy" || raw.type === "tunnel", `${where}.type`, 'must be "proxy" or "tunnel"');
  const type = raw.type as EndpointType;
  const port = raw.port ?? DEFAULT_PORT[type];
  need(
    typeof port === "number" && Number.isInteger(port) && port > 0 && port < 65536,
    `${where}.port`,
    "must be a port number",
  );
  const ep: Endpoint = { nodeName: raw.nodeName as string, type, port, underNAT: raw.underNAT === true };
  if (raw.publicIP !== undefined) {
    need(typeof raw.publicIP === "string", `${where}.publicIP`, "must be a string");
    ep.publicIP = raw.publicIP;
  }
  if (raw.publicPort !== undefined) {
    need(typeof raw.publicPort === "number", `${where}.publicPort`, "must be a number");
    ep.publicPort = raw.publicPort;
  }
  if (raw.natType !== undefined) ep.natType = String(raw.natType);
  if (raw.config !== undefined) {
    need(
      isObj(raw.config) && Object.values(raw.config).every((v) => typeof v === "string"),
      `${where}.config`,
      "must map strings to strings",
    );
    ep.config = raw.config as Record<string, string>;
  }
  return ep;
}

/** Parses a Gateway manifest (the Kubernetes object shape); `status` in the input is ignored. */
export function parseGatewayManifest(raw: unknown, where = "gateway"): Gateway {
  need(isObj(raw), where, "must be an object");
  if (raw.apiVersion !== undefined) {
    need(raw.apiVersion === GATEWAY_API_VERSION, `${where}.apiVersion`, `must be ${GATEWAY_API_VERSION}`);
  }
  if (raw.kind !== undefined) need(raw.kind === "Gateway", `${where}.kind`, "must be Gateway");
  need(isObj(raw.metadata), `${where}.metadata`, "must be an object");
  const name = raw.metadata.name;
  need(isObjectName(name), `${where}.metadata.name`, `must be a DNS subdomain name, got ${JSON.stringify(name)}`);
  const at = `gateway ${name}`;
  const spec = raw.spec ?? {};
  need(isObj(spec), `${at}.spec`, "must be an object");
  const proxyConfig = isObj(spec.proxyConfig) ? spec.proxyConfig : {};
  const tunnelConfig = isObj(spec.tunnelConfig) ? spec.tunnelConfig : {};
  const endpointsRaw = spec.endpoints ?? [];
  need(Array.isArray(endpointsRaw), `${at}.spec.endpoints`, "must be a list");
  const endpoints = endpointsRaw.map((e, i) => parseEndpoint(e, `${at}.spec.endpoints[${i}]`));
  const seen = new Set<string>();
  for (const ep of endpoints) {
    const k = `${ep.nodeName}/${ep.type}`;
    need(!seen.has(k), `${at}.spec.endpoints`, `lists ${ep.type} endpoint ${ep.nodeName} twice`);
    seen.add(k);
  }
  const exposeType = spec.exposeType ?? "";
  need(
    exposeType === "" || exposeType === "PublicIP" || exposeType === "LoadBalancer",
    `${at}.spec.exposeType`,
    'must be "", "PublicIP" or "LoadBalancer"',
  );
  const out: GatewaySpec = {
    proxyConfig: { replicas: parseReplicas(proxyConfig.replicas, `${at}.spec.proxyConfig.replicas`, 16, 1) },
    tunnelConfig: { replicas: parseReplicas(tunnelConfig.replicas, `${at}.spec.tunnelConfig.replicas`, 1, 1) },
    endpoints,
    exposeType: exposeType as ExposeType,
  };
  const httpPorts = parsePortList(proxyConfig.proxyHTTPPort, `${at}.spec.proxyConfig.proxyHTTPPort`);
  const httpsPorts = parsePortList(proxyConfig.proxyHTTPSPort, `${at}.spec.proxyConfig.proxyHTTPSPort`);
  if (httpPorts) out.proxyConfig.proxyHTTPPort = httpPorts;
  if (httpsPorts) out.proxyConfig.proxyHTTPSPort = httpsPorts;
  if (isObj(spec.nodeSelector)) out.nodeSelector = spec.nodeSelector as GatewaySpec["nodeSelector"];
  const labels = isObj(raw.metadata.labels) ? (raw.metadata.labels as Record<string, string>) : undefined;
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: "Gateway",
    metadata: labels ? { name, labels } : { name },
    spec: out,
    status: emptyStatus(),
  };
}

/** Validates a record read back from KV (written by us, but the bucket is open to any NATS client). */
export function parseGatewayRecord(raw: unknown, where: string): Gateway {
  const gw = parseGatewayManifest(raw, where);
  const st = isObj(raw) && isObj(raw.status) ? raw.status : {};
  const term = st.term ?? 0;
  need(
    typeof term === "number" && Number.isInteger(term) && term >= 0,
    `${where}.status.term`,
    "must be a non-negative integer",
  );
  const active = Array.isArray(st.activeEndpoints) ? st.activeEndpoints : [];
  const nodes = Array.isArray(st.nodes) ? (st.nodes as NodeInfo[]) : [];
  gw.status = {
    term,
    activeEndpoints: active.map((e, i) => parseEndpoint(e, `${where}.status.activeEndpoints[${i}]`)),
    nodes,
  };
  if (typeof st.problem === "string") gw.status.problem = st.problem;
  if (typeof st.tunnelProblem === "string") gw.status.tunnelProblem = st.tunnelProblem;
  return gw;
}
