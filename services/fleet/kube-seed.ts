// The fleet's topology written into a Kubernetes API (`npm run fleet -- --kube`), the way a cluster would
// hold it: a Node per topology node (labels, InternalIP, podCIDR, Ready, as a kubelet reports them), a
// NodePool per pool (type Cloud for the pools of exposed Gateways, Edge otherwise), the Gateways (with the
// addresses the fleet planned), ConfigMap kube-system/raven-cfg, and a Pod `demo-<node>` bound to each node
// (its logs and exec are the node's kubelet stand-in's, reached through Raven). Idempotent: an object that
// exists is patched to what the topology says.
import { KubeApiError, type KubeClient } from "../../lib/kube";
import { domainOf } from "../../shared/domains";
import { GATEWAY_API_VERSION, LABEL_NODEPOOL, type Gateway } from "../../shared/gateway";
import type { Topology } from "../../shared/topology";

const MERGE_PATCH = "application/merge-patch+json";
/** What each demo node reports as its capacity (kubectl top node shows usage against it). */
const NODE_RESOURCES = { cpu: "2", memory: "4Gi", pods: "110" };

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
};

/** Creates the object, or merge-patches it to `obj` if it exists. */
async function put(client: KubeClient, collection: string, obj: Obj): Promise<"created" | "updated"> {
  try {
    await client.request("POST", collection, obj);
    return "created";
  } catch (err) {
    if (!(err instanceof KubeApiError) || err.status !== 409) throw err;
    await client.request("PATCH", `${collection}/${obj.metadata.name}`, obj, MERGE_PATCH);
    return "updated";
  }
}

export async function seedKubeObjects(
  client: KubeClient,
  topology: Topology,
  gateways: readonly Gateway[],
  modes: Readonly<{ l7: boolean; l3: boolean }>,
  progress: (line: string) => void,
): Promise<void> {
  await put(client, "/api/v1/namespaces/kube-system/configmaps", {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "raven-cfg", namespace: "kube-system" },
    data: { "enable-l7-proxy": String(modes.l7), "enable-l3-tunnel": String(modes.l3) },
  });
  const exposedPools = new Set<string>();
  for (const n of topology.nodes) {
    const gw = gateways.find((g) => g.metadata.name === n.labels["raven.openyurt.io/gateway"]);
    if (gw && gw.spec.exposeType !== "" && n.labels[LABEL_NODEPOOL]) exposedPools.add(domainOf(n));
  }
  const pools = [...new Set(topology.nodes.flatMap((n) => n.labels[LABEL_NODEPOOL] ?? []))].sort();
  for (const pool of pools)
    await put(client, "/apis/apps.openyurt.io/v1beta1/nodepools", {
      apiVersion: "apps.openyurt.io/v1beta1",
      kind: "NodePool",
      metadata: { name: pool },
      spec: { type: exposedPools.has(pool) ? "Cloud" : "Edge" },
    });
  await Promise.all(
    topology.nodes.map(async (n) => {
      await put(client, "/api/v1/nodes", {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: n.name, labels: { ...n.labels, "kubernetes.io/hostname": n.name } },
        spec: n.podCIDR ? { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] } : {},
      });
      // Status is its own subresource: what a create carries there is dropped, as the kubelet knows.
      await client.request(
        "PATCH",
        `/api/v1/nodes/${n.name}/status`,
        {
          status: {
            addresses: [
              { type: "InternalIP", address: n.internalIP },
              { type: "Hostname", address: n.name },
            ],
            conditions: [
              { type: "Ready", status: "True", reason: "KubeletReady", message: "the fleet's node actor runs here" },
            ],
            capacity: NODE_RESOURCES,
            allocatable: NODE_RESOURCES,
          },
        },
        MERGE_PATCH,
      );
      await put(client, "/api/v1/namespaces/default/pods", {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `demo-${n.name}`, namespace: "default" },
        spec: { nodeName: n.name, containers: [{ name: "app", image: "raven-demo" }] },
      });
      await client.request(
        "PATCH",
        `/api/v1/namespaces/default/pods/demo-${n.name}/status`,
        { status: { phase: "Running" } },
        MERGE_PATCH,
      );
    }),
  );
  const results = await Promise.all(
    gateways.map((gw) =>
      put(client, "/apis/raven.openyurt.io/v1beta1/gateways", {
        apiVersion: GATEWAY_API_VERSION,
        kind: "Gateway",
        metadata: { name: gw.metadata.name, ...(gw.metadata.labels ? { labels: gw.metadata.labels } : {}) },
        spec: gw.spec,
      }),
    ),
  );
  progress(
    `      Kubernetes: ${topology.nodes.length} Nodes (a Pod demo-<node> on each), ${pools.length} NodePools, raven-cfg; Gateways ${gateways
      .map((g, i) => `${g.metadata.name} ${results[i]}`)
      .join(", ")}`,
  );
}
