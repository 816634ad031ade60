// Reading Gateway objects: users' manifests (parseGatewayManifest) and the records read back from KV
// (parseGatewayRecord). A manifest is read as the API server and OpenYurt's webhooks would read it:
// - Strict: every field is checked against OpenYurt's v1beta1 schema; an unknown or misspelled one is an
//   error naming its path and the likely intended field (`replicas` -> `Replicas`, `exposeTyp` -> `exposeType`).
//   Server-set metadata (uid, resourceVersion, ...) is accepted and dropped, so `kubectl get -o yaml`
//   output applies; `status` is the election's and is ignored.
// - Defaulted as OpenYurt defaults it: nodeSelector `raven.openyurt.io/gateway: <name>` when none is given,
//   port 0 or none -> 10262 (proxy) / 4500 (tunnel); Replicas 1 when not given.
// - Validated with every rule of OpenYurt's validating webhook (see validate()) and Raven's own.
// - A v1alpha1 manifest is converted as OpenYurt converts it: every endpoint a tunnel endpoint on 4500, both
//   Replicas 1.
// A record was written by Raven, but the KV is open to any NATS client, so it is checked as strictly, without
// defaulting (a record stays as it was written) and with its status kept; a record written before the
// capital-R `Replicas` (lower-case `replicas`) is still read.
import { isIP } from "node:net";
import { TopologyError } from "./errors";
import { isObjectName } from "./protocol/subjects";
import {
  DEFAULT_PORT,
  GATEWAY_API_VERSION,
  GATEWAY_API_VERSION_ALPHA,
  LABEL_GATEWAY,
  emptyStatus,
  type Endpoint,
  type EndpointType,
  type ExposeType,
  type Gateway,
  type GatewaySpec,
  type LabelSelector,
  type NodeInfo,
} from "./gateway";

type Raw = Record<string, unknown>;
type Mode = "manifest" | "record";
const isObj = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);
/** YAML's `key:` with nothing after it is null: the same as not set, as the API server reads it. */
const given = (v: unknown): unknown => (v === null ? undefined : v);

/** Server-set metadata a manifest may carry (from `kubectl get -o yaml`); accepted and dropped. */
const SERVER_METADATA = ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"];
const MAX_PROXY_REPLICAS = 16;

function need(cond: boolean, where: string, what: string): asserts cond {
  if (!cond) throw new TopologyError(`${where}: ${what}`);
}

/** The known field a misspelled one most likely meant: same letters in another case, or at most two edits. */
function closest(key: string, known: readonly string[]): string | undefined {
  const same = known.find((k) => k.toLowerCase() === key.toLowerCase());
  if (same) return same;
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d <= 2 && (!best || d < best.d)) best = { k, d };
  }
  return best?.k;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

function onlyKnown(raw: Raw, where: string, known: readonly string[], ignored: readonly string[] = []): void {
  for (const key of Object.keys(raw)) {
    if (known.includes(key) || ignored.includes(key)) continue;
    const hint = closest(key, known);
    throw new TopologyError(
      `${where}.${key}: unknown field${hint ? ` (did you mean ${hint}?)` : ""}; the fields here are ${known.join(", ")}`,
    );
  }
}

function stringMap(raw: unknown, where: string): Record<string, string> | undefined {
  if (given(raw) === undefined) return undefined;
  need(isObj(raw) && Object.values(raw).every((v) => typeof v === "string"), where, "must map strings to strings");
  return raw as Record<string, string>;
}

function parseReplicas(raw: unknown, where: string, max: number): number {
  const v = given(raw);
  if (v === undefined) return 1;
  need(typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max, where, `must be an integer 0..${max}`);
  return v;
}

function parsePortList(raw: unknown, where: string): string | undefined {
  const v = given(raw);
  if (v === undefined) return undefined;
  need(
    typeof v === "string" && /^\d{1,5}(,\d{1,5})*$/.test(v),
    where,
    'must be a comma-separated port list like "10250,9100"',
  );
  for (const port of v.split(","))
    need(Number(port) >= 1 && Number(port) <= 65535, where, `port ${port} is outside 1..65535`);
  return v;
}

const isPort = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v > 0 && v < 65536;

/** The fields of each part of a v1beta1 Gateway (and a v1alpha1 endpoint): deploy/gateway-crd.yaml's schema. */
export const GATEWAY_FIELDS = {
  gateway: ["apiVersion", "kind", "metadata", "spec", "status"],
  metadata: ["name", "labels", "annotations"],
  spec: ["nodeSelector", "proxyConfig", "tunnelConfig", "endpoints", "exposeType"],
  proxyConfig: ["Replicas", "proxyHTTPPort", "proxyHTTPSPort"],
  tunnelConfig: ["Replicas"],
  endpoint: ["nodeName", "type", "port", "underNAT", "natType", "publicIP", "publicPort", "config"],
  nodeSelector: ["matchLabels", "matchExpressions"],
  selectorRequirement: ["key", "operator", "values"],
  alphaSpec: ["nodeSelector", "endpoints", "exposeType"],
  alphaEndpoint: ["nodeName", "publicIP", "underNAT", "config"],
} as const;
const F = GATEWAY_FIELDS;

function parseEndpoint(raw: unknown, where: string, mode: Mode): Endpoint {
  need(isObj(raw), where, "must be an object");
  onlyKnown(raw, where, F.endpoint);
  need(isObjectName(raw.nodeName), `${where}.nodeName`, `must be a node name, got ${JSON.stringify(raw.nodeName)}`);
  need(raw.type === "proxy" || raw.type === "tunnel", `${where}.type`, 'must be "proxy" or "tunnel"');
  const type = raw.type as EndpointType;
  // OpenYurt's defaulting: port 0 (or none) is the type's default port. A record keeps what was written.
  const port = mode === "manifest" && (given(raw.port) === undefined || raw.port === 0) ? DEFAULT_PORT[type] : raw.port;
  need(isPort(port), `${where}.port`, "must be a port number");
  const underNAT = given(raw.underNAT) ?? false;
  need(typeof underNAT === "boolean", `${where}.underNAT`, "must be true or false");
  const ep: Endpoint = { nodeName: raw.nodeName as string, type, port, underNAT };
  const publicIP = given(raw.publicIP);
  if (publicIP !== undefined && publicIP !== "") {
    need(typeof publicIP === "string", `${where}.publicIP`, "must be a string");
    need(isIP(publicIP) !== 0, `${where}.publicIP`, `must be an IP address, got ${JSON.stringify(publicIP)}`);
    ep.publicIP = publicIP;
  }
  const publicPort = given(raw.publicPort);
  if (publicPort !== undefined && publicPort !== 0) {
    need(isPort(publicPort), `${where}.publicPort`, "must be a port number");
    ep.publicPort = publicPort;
  }
  const natType = given(raw.natType);
  if (natType !== undefined && natType !== "") {
    need(typeof natType === "string", `${where}.natType`, "must be a string");
    ep.natType = natType;
  }
  const config = stringMap(raw.config, `${where}.config`);
  if (config) ep.config = config;
  return ep;
}

function parseSelector(raw: unknown, where: string): LabelSelector | undefined {
  if (given(raw) === undefined) return undefined;
  need(isObj(raw), where, "must be an object");
  onlyKnown(raw, where, F.nodeSelector);
  const out: LabelSelector = {};
  const labels = stringMap(raw.matchLabels, `${where}.matchLabels`);
  if (labels) out.matchLabels = labels;
  const exprs = given(raw.matchExpressions);
  if (exprs !== undefined) {
    need(Array.isArray(exprs), `${where}.matchExpressions`, "must be a list");
    out.matchExpressions = exprs.map((e, i) => {
      const at = `${where}.matchExpressions[${i}]`;
      need(isObj(e), at, "must be an object");
      onlyKnown(e, at, F.selectorRequirement);
      need(typeof e.key === "string" && e.key !== "", `${at}.key`, "must be a label key");
      const op = e.operator;
      need(
        op === "In" || op === "NotIn" || op === "Exists" || op === "DoesNotExist",
        `${at}.operator`,
        "must be In, NotIn, Exists or DoesNotExist",
      );
      const values = given(e.values) ?? [];
      need(
        Array.isArray(values) && values.every((v) => typeof v === "string"),
        `${at}.values`,
        "must be a list of strings",
      );
      const withValues = op === "In" || op === "NotIn";
      need(
        withValues === values.length > 0,
        `${at}.values`,
        withValues ? `must not be empty with ${op}` : `must be empty with ${op}`,
      );
      return withValues ? { key: e.key, operator: op, values } : { key: e.key, operator: op };
    });
  }
  return out;
}

/** OpenYurt's validating webhook, rule for rule, besides the checks done while parsing. */
function validate(spec: GatewaySpec, at: string): void {
  const exposed = spec.exposeType !== "";
  spec.endpoints.forEach((ep, i) =>
    need(
      !(exposed && ep.underNAT),
      `${at}.spec.endpoints[${i}].underNAT`,
      `must be false: the Gateway is exposed (exposeType ${spec.exposeType}), so it cannot be under NAT`,
    ),
  );
  const first = spec.endpoints[0];
  spec.endpoints.forEach((ep, i) =>
    need(
      ep.underNAT === first!.underNAT,
      `${at}.spec.endpoints[${i}].underNAT`,
      `must be the same for every endpoint (endpoints[0] says ${first!.underNAT})`,
    ),
  );
  const proxies = spec.endpoints.filter((e) => e.type === "proxy").length;
  const want = spec.proxyConfig.Replicas;
  need(
    want <= 1 || want <= proxies,
    `${at}.spec.proxyConfig.Replicas`,
    `is ${want}, but the Gateway lists ${proxies} proxy endpoint${proxies === 1 ? "" : "s"}`,
  );
  const seen = new Set<string>();
  for (const ep of spec.endpoints) {
    const k = `${ep.nodeName}/${ep.type}`;
    need(!seen.has(k), `${at}.spec.endpoints`, `lists ${ep.type} endpoint ${ep.nodeName} twice`);
    seen.add(k);
  }
}

function parseSpec(raw: unknown, at: string, mode: Mode, alpha: boolean): GatewaySpec {
  const spec = given(raw) ?? {};
  need(isObj(spec), `${at}.spec`, "must be an object");
  onlyKnown(spec, `${at}.spec`, alpha ? F.alphaSpec : F.spec);
  const endpointsRaw = given(spec.endpoints) ?? [];
  need(Array.isArray(endpointsRaw), `${at}.spec.endpoints`, "must be a list");
  const endpoints = endpointsRaw.map((e, i) => {
    const where = `${at}.spec.endpoints[${i}]`;
    if (!alpha) return parseEndpoint(e, where, mode);
    // v1alpha1 knew only tunnels: OpenYurt's conversion makes each endpoint a tunnel endpoint on 4500.
    need(isObj(e), where, "must be an object");
    onlyKnown(e, where, F.alphaEndpoint);
    return parseEndpoint({ ...e, type: "tunnel", port: DEFAULT_PORT.tunnel }, where, mode);
  });
  const exposeType = given(spec.exposeType) ?? "";
  need(
    exposeType === "" || exposeType === "PublicIP" || exposeType === "LoadBalancer",
    `${at}.spec.exposeType`,
    'must be "", "PublicIP" or "LoadBalancer"',
  );
  const proxyConfig = alpha ? {} : (given(spec.proxyConfig) ?? {});
  const tunnelConfig = alpha ? {} : (given(spec.tunnelConfig) ?? {});
  need(isObj(proxyConfig), `${at}.spec.proxyConfig`, "must be an object");
  need(isObj(tunnelConfig), `${at}.spec.tunnelConfig`, "must be an object");
  // Records written before the capital R (lower-case `replicas`) are still read; manifests must spell it right.
  const legacy = mode === "record" ? ["replicas"] : [];
  onlyKnown(proxyConfig, `${at}.spec.proxyConfig`, F.proxyConfig, legacy);
  onlyKnown(tunnelConfig, `${at}.spec.tunnelConfig`, F.tunnelConfig, legacy);
  const out: GatewaySpec = {
    proxyConfig: {
      Replicas: parseReplicas(
        proxyConfig.Replicas ?? proxyConfig.replicas,
        `${at}.spec.proxyConfig.Replicas`,
        MAX_PROXY_REPLICAS,
      ),
    },
    tunnelConfig: {
      Replicas: parseReplicas(tunnelConfig.Replicas ?? tunnelConfig.replicas, `${at}.spec.tunnelConfig.Replicas`, 1),
    },
    endpoints,
    exposeType: exposeType as ExposeType,
  };
  const httpPorts = parsePortList(proxyConfig.proxyHTTPPort, `${at}.spec.proxyConfig.proxyHTTPPort`);
  const httpsPorts = parsePortList(proxyConfig.proxyHTTPSPort, `${at}.spec.proxyConfig.proxyHTTPSPort`);
  if (httpPorts) out.proxyConfig.proxyHTTPPort = httpPorts;
  if (httpsPorts) out.proxyConfig.proxyHTTPSPort = httpsPorts;
  const selector = parseSelector(spec.nodeSelector, `${at}.spec.nodeSelector`);
  if (selector) out.nodeSelector = selector;
  return out;
}

function parseGateway(raw: unknown, where: string, mode: Mode): Gateway {
  need(isObj(raw), where, "must be an object");
  const version = raw.apiVersion ?? GATEWAY_API_VERSION;
  need(
    version === GATEWAY_API_VERSION || (mode === "manifest" && version === GATEWAY_API_VERSION_ALPHA),
    `${where}.apiVersion`,
    mode === "manifest"
      ? `must be ${GATEWAY_API_VERSION} or ${GATEWAY_API_VERSION_ALPHA}`
      : `must be ${GATEWAY_API_VERSION}`,
  );
  need((raw.kind ?? "Gateway") === "Gateway", `${where}.kind`, "must be Gateway");
  onlyKnown(raw, where, F.gateway);
  need(isObj(raw.metadata), `${where}.metadata`, "must be an object");
  const meta = raw.metadata;
  const name = meta.name;
  need(isObjectName(name), `${where}.metadata.name`, `must be a DNS subdomain name, got ${JSON.stringify(name)}`);
  const at = `gateway ${name}`;
  need(
    given(meta.namespace) === undefined || meta.namespace === "",
    `${at}.metadata.namespace`,
    "must not be set: Gateways are cluster-scoped",
  );
  onlyKnown(meta, `${at}.metadata`, F.metadata, ["namespace", ...SERVER_METADATA]);
  const spec = parseSpec(raw.spec, at, mode, version === GATEWAY_API_VERSION_ALPHA);
  if (mode === "manifest") {
    spec.nodeSelector ??= { matchLabels: { [LABEL_GATEWAY]: name } };
    validate(spec, at);
  }
  const labels = stringMap(meta.labels, `${at}.metadata.labels`);
  const annotations = stringMap(meta.annotations, `${at}.metadata.annotations`);
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: "Gateway",
    metadata: { name, ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
    spec,
    status: emptyStatus(),
  };
}

function parseNodeInfo(raw: unknown, where: string): NodeInfo {
  need(isObj(raw), where, "must be an object");
  need(isObjectName(raw.nodeName), `${where}.nodeName`, "must be a node name");
  need(typeof raw.privateIP === "string", `${where}.privateIP`, "must be a string");
  const subnets = raw.subnets ?? [];
  need(
    Array.isArray(subnets) && subnets.every((x) => typeof x === "string"),
    `${where}.subnets`,
    "must be a list of strings",
  );
  return { nodeName: raw.nodeName as string, privateIP: raw.privateIP, subnets };
}

/** Parses a user's Gateway manifest (v1beta1, or v1alpha1 converted); its `status` is ignored. */
export function parseGatewayManifest(raw: unknown, where = "gateway"): Gateway {
  return parseGateway(raw, where, "manifest");
}

/** Validates a record read back from KV (written by us, but the bucket is open to any NATS client). */
export function parseGatewayRecord(raw: unknown, where: string): Gateway {
  const gw = parseGateway(raw, where, "record");
  const st = isObj(raw) && isObj(raw.status) ? raw.status : {};
  const term = st.term ?? 0;
  need(
    typeof term === "number" && Number.isInteger(term) && term >= 0,
    `${where}.status.term`,
    "must be a non-negative integer",
  );
  const active = Array.isArray(st.activeEndpoints) ? st.activeEndpoints : [];
  const nodes = Array.isArray(st.nodes) ? st.nodes.map((n, i) => parseNodeInfo(n, `${where}.status.nodes[${i}]`)) : [];
  gw.status = {
    term,
    activeEndpoints: active.map((e, i) => parseEndpoint(e, `${where}.status.activeEndpoints[${i}]`, "record")),
    nodes,
  };
  if (typeof st.problem === "string") gw.status.problem = st.problem;
  if (typeof st.tunnelProblem === "string") gw.status.tunnelProblem = st.tunnelProblem;
  return gw;
}
