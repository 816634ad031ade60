// bench:scale --kube: the simulated fleet's Nodes, Gateways and raven-cfg in the Kubernetes API double,
// written straight into its store (seeding is not what is measured), and the double's write requests
// counted: status patches and Events.
import { startRavenCluster, type RavenCluster } from "../test/kube-api/cluster";
import { domainName, gatewayName, nodeName } from "./sim";

export type KubeWrites = { statusPatches: number; events: number };

export async function startScaleCluster(
  dir: string,
  domains: number,
  nodesPerDomain: number,
): Promise<{ cluster: RavenCluster; writes: KubeWrites }> {
  const writes: KubeWrites = { statusPatches: 0, events: 0 };
  const cluster = await startRavenCluster(dir, {
    // Every write of the run is kept, so that no informer re-lists because history ran out.
    historyLimit: 1_000_000,
    onRequest: ({ method, path }) => {
      if (method === "PATCH" && path.startsWith("/apis/raven.openyurt.io/") && path.endsWith("/status"))
        writes.statusPatches++;
      if (method === "POST" && path.endsWith("/events")) writes.events++;
    },
  });
  const { store } = cluster.api;
  store.create(
    { group: "", resource: "configmaps" },
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "raven-cfg", namespace: "kube-system" },
      data: { "enable-l7-proxy": "true", "enable-l3-tunnel": "true" },
    },
  );
  for (let d = 0; d < domains; d++) {
    store.create(
      { group: "raven.openyurt.io", resource: "gateways" },
      {
        apiVersion: "raven.openyurt.io/v1beta1",
        kind: "Gateway",
        metadata: { name: gatewayName(d) },
        spec: {
          proxyConfig: { Replicas: 1 },
          tunnelConfig: { Replicas: 1 },
          endpoints: [0, 1].flatMap((n) =>
            ["proxy", "tunnel"].map((type) => ({ nodeName: nodeName(d, n), type, port: 0, underNAT: false })),
          ),
        },
      },
    );
    for (let n = 0; n < nodesPerDomain; n++) {
      const name = nodeName(d, n);
      store.create(
        { group: "", resource: "nodes" },
        {
          apiVersion: "v1",
          kind: "Node",
          metadata: {
            name,
            labels: {
              "apps.openyurt.io/nodepool": domainName(d),
              "raven.openyurt.io/gateway": gatewayName(d),
              "kubernetes.io/hostname": name,
            },
          },
          spec: { podCIDR: `10.${100 + Math.floor(d / 250)}.${d % 250}.${n * 16}/28` },
          status: {
            // The load generator registers the same address.
            addresses: [{ type: "InternalIP", address: `10.${Math.floor(d / 250)}.${d % 250}.${n + 1}` }],
            conditions: [{ type: "Ready", status: "True" }],
          },
        },
      );
    }
  }
  return { cluster, writes };
}
