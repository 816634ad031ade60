// What the coordinator reads from Kubernetes objects and what it writes back, as pure functions: Nodes,
// NodePools and ConfigMap raven-cfg read into facts; a Gateway object read into the record the election uses
// (OpenYurt's validation and defaulting, raven-cfg applied); the Gateway status, Events and the
// edge-tunnel-nodes hosts map computed from those facts and the KV records. No I/O here (kube-sync.ts does it).
import { placeNode, endpointOwners } from "../../../shared/domains";
export { hostsMap } from "../../../shared/hosts-map";
import {
  GATEWAY_API_VERSION,
  LABEL_GATEWAY,
  LABEL_NODEPOOL,
  isSolo,
  type Endpoint,
  type Gateway,
  type NodeInfo,
} from "../../../shared/gateway";
import { parseGatewayManifest } from "../../../shared/gateway-manifest";
import { isRecord, stringMap, type KubeNode, type KubeObject } from "../../../lib/kube";

/** ConfigMap kube-system/raven-cfg: which modes are on. Missing (or not "true"): off, as in OpenYurt. */
export type RavenCfg = Readonly<{ l7: boolean; l3: boolean }>;

export const RAVEN_CFG = { namespace: "kube-system", name: "raven-cfg" } as const;
export const HOSTS_CONFIGMAP = { namespace: "kube-system", name: "edge-tunnel-nodes", key: "tunnel-nodes" } as const;
export const EventReason = {
  Elected: "ActiveEndpointElected",
  Lost: "ActiveEndpointLost",
  Invalid: "InvalidGateway",
} as const;
export type EventReason = (typeof EventReason)[keyof typeof EventReason];

export function readRavenCfg(cm: KubeObject | undefined): RavenCfg {
  const data = stringMap(cm?.data);
  return { l7: data["enable-l7-proxy"] === "true", l3: data["enable-l3-tunnel"] === "true" };
}

/** NodePool spec.type, lower-cased ("cloud", "edge"), or "" when it sets none. */
export function readNodePoolType(o: KubeObject): string {
  const spec = isRecord(o.spec) ? o.spec : {};
  return typeof spec.type === "string" ? spec.type.toLowerCase() : "";
}

/**
 * A Gateway object as the record the election runs on: validated and defaulted like a manifest (errors name
 * the path), server-set metadata dropped, and a mode raven-cfg turns off given no replicas, so that nothing of
 * it is elected (its endpoints stay listed: turning the mode on again needs no edit of the Gateway).
 */
export function gatewayFromObject(o: KubeObject, cfg: RavenCfg): Gateway {
  const labels = stringMap(o.metadata.labels);
  const manifest = {
    apiVersion: o.apiVersion ?? GATEWAY_API_VERSION,
    kind: o.kind ?? "Gateway",
    metadata: { name: o.metadata.name, ...(Object.keys(labels).length ? { labels } : {}) },
    ...(o.spec !== undefined ? { spec: o.spec } : {}),
  };
  const gw = parseGatewayManifest(manifest, `Gateway ${o.metadata.name}`);
  if (isSolo(gw)) {
    // The label belongs to the coordinator's own records; a Gateway object carrying it would be dropped.
    throw new Error(`Gateway ${o.metadata.name}: metadata.labels must not set raven.openyurt.io/solo`);
  }
  return {
    ...gw,
    spec: {
      ...gw.spec,
      proxyConfig: { ...gw.spec.proxyConfig, Replicas: cfg.l7 ? gw.spec.proxyConfig.Replicas : 0 },
      tunnelConfig: { Replicas: cfg.l3 ? gw.spec.tunnelConfig.Replicas : 0 },
    },
  };
}

/** The status Raven mirrors into a Gateway object (what `kubectl get gw -o yaml` shows). */
export type MirroredStatus = { nodes: NodeInfo[]; activeEndpoints: Endpoint[] };

/**
 * status.nodes: the Nodes this Gateway serves (labelled for it, or one of its endpoints), sorted by name, as
 * OpenYurt's gateway-pickup writes them; status.activeEndpoints: the KV record's, with the mode flags in
 * their config.
 */
export function mirroredStatus(
  name: string,
  record: Gateway | undefined,
  served: readonly KubeNode[],
  cfg: RavenCfg,
): MirroredStatus {
  const nodes = [...served]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((n) => ({ nodeName: n.name, privateIP: n.internalIP, subnets: [...n.subnets] }));
  const flags = { "enable-l7-proxy": String(cfg.l7), "enable-l3-tunnel": String(cfg.l3) };
  const activeEndpoints = (record?.metadata.name === name ? record.status.activeEndpoints : []).map((e) => ({
    ...e,
    config: { ...e.config, ...flags },
  }));
  return { nodes, activeEndpoints };
}

/** Which Gateway each Node belongs to (by name), for the Gateways given; nodes of none are left out. */
export function nodesByGateway(gateways: readonly Gateway[], nodes: readonly KubeNode[]): Map<string, KubeNode[]> {
  const names = new Set(gateways.map((g) => g.metadata.name));
  const owners = endpointOwners(gateways);
  const out = new Map<string, KubeNode[]>();
  for (const n of nodes) {
    const place = placeNode(n, names, owners);
    if (place.solo) continue;
    const list = out.get(place.name) ?? [];
    list.push(n);
    out.set(place.name, list);
  }
  return out;
}

/** A stable comparison of two statuses (key order and `undefined` members do not count). */
export function sameStatus(a: unknown, b: MirroredStatus): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    isRecord(x)
      ? Object.fromEntries(
          Object.entries(x)
            .filter(([, y]) => y !== undefined)
            .sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0)),
        )
      : x,
  );
}

/** The endpoints (type/node) that became active and that stopped being active from `before` to `after`. */
export function activeChanges(
  before: readonly Pick<Endpoint, "nodeName" | "type">[],
  after: readonly Pick<Endpoint, "nodeName" | "type">[],
): { elected: string[]; lost: string[] } {
  const key = (e: Pick<Endpoint, "nodeName" | "type">) => `${e.type}/${e.nodeName}`;
  const was = new Set(before.map(key));
  const now = new Set(after.map(key));
  return { elected: [...now].filter((k) => !was.has(k)), lost: [...was].filter((k) => !now.has(k)) };
}

/** Reads a Gateway object's status.activeEndpoints, keeping what names a node and a type. */
export function objectActives(o: KubeObject | undefined): Pick<Endpoint, "nodeName" | "type">[] {
  const st = isRecord(o?.status) ? o.status : {};
  const list = Array.isArray(st.activeEndpoints) ? st.activeEndpoints.filter(isRecord) : [];
  return list.flatMap((e) =>
    typeof e.nodeName === "string" && (e.type === "proxy" || e.type === "tunnel")
      ? [{ nodeName: e.nodeName, type: e.type }]
      : [],
  );
}

/** The node pool a Node's labels place it in ("" for none). */
export const poolOf = (n: KubeNode): string => n.labels[LABEL_NODEPOOL] ?? "";
/** The Gateway a Node's label names ("" for none). */
export const gatewayLabelOf = (n: KubeNode): string => n.labels[LABEL_GATEWAY] ?? "";
