// The Gateway records the fleet launcher writes before any actor starts: the topology's manifests (applied
// like `raven gateways apply`: a record that exists keeps its status; with Kubernetes, written there as
// objects instead, for the coordinator to mirror), and in tunnel mode each tunnel endpoint's publicIP set to
// its node's underlay address (what peers dial), plus a record for every solo node, which the coordinator
// would otherwise create without one. Idempotent: a second run changes nothing.
import type { KV } from "@nats-io/kv";
import { describeError } from "../../shared/errors";
import { soloGateway, soloKey, type Gateway } from "../../shared/gateway";
import { parseGatewayRecord } from "../../shared/gateway-manifest";
import { applyGateway } from "../../shared/gateway-store";
import { casPut, readJson } from "../../shared/kv";
import { openBuckets, type HubBuckets, type NatsConnection } from "../../shared/nats";
import { partitionOf, type Topology } from "../../shared/topology";
import { KubeClient } from "../../lib/kube";
import { seedKubeObjects } from "./kube-seed";
import type { NodeHost } from "./netns";

/**
 * `hostOf`: where each node lives in tunnel mode (null: tunnel mode is off, no addresses are filled in).
 * `kube`: the Gateways go to this cluster (with the Nodes, NodePools and raven-cfg) rather than to KV.
 */
export async function seedGatewayRecords(
  buckets: HubBuckets,
  topology: Topology,
  gateways: readonly Gateway[],
  hostOf: ((node: string) => NodeHost | undefined) | null,
  progress: (line: string) => void,
  kube?: Readonly<{ client: KubeClient; modes: { l7: boolean; l3: boolean } }>,
): Promise<void> {
  const withAddresses = (gw: Gateway): Gateway => (hostOf ? withTunnelAddresses(gw, hostOf) : gw);
  const records = gateways.map(withAddresses);
  if (kube) {
    await seedKubeObjects(kube.client, topology, records, kube.modes, progress);
  } else {
    const results = await Promise.all(records.map((g) => applyGateway(buckets.gateways, g)));
    progress(`      Gateway records: ${records.map((g, i) => `${g.metadata.name} ${results[i]}`).join(", ")}`);
  }
  if (hostOf) await seedSoloRecords(buckets.gateways, topology, withAddresses, progress);
}

/** A solo node's record with its tunnel endpoint's address; an existing record is kept. */
async function seedSoloRecords(
  kv: KV,
  topology: Topology,
  withAddresses: (gw: Gateway) => Gateway,
  progress: (line: string) => void,
) {
  for (const unit of partitionOf(topology).units.values()) {
    if (!unit.solo) continue;
    const gw = withAddresses(soloGateway(unit.name));
    const key = soloKey(unit.name);
    const current = await readJson(kv, key, (raw) => parseGatewayRecord(raw, key));
    if (current.value !== null) continue;
    await casPut(kv, key, gw, current.revision).catch((err) =>
      progress(`      solo record ${unit.name}: ${describeError(err)}`),
    );
  }
}

/** What the launcher seeds from: where the hub is, and the cluster (`kubeconfig`) if Kubernetes holds them. */
export type SeedOptions = Readonly<{
  connect: () => Promise<NatsConnection>;
  topology: Topology;
  gateways: readonly Gateway[];
  hostOf: ((node: string) => NodeHost | undefined) | null;
  kubeconfig?: string;
  progress: (line: string) => void;
}>;

/** Connects to the hub (and the cluster), seeds, and lets go of both. */
export async function seedFleet(o: SeedOptions): Promise<void> {
  const nc = await o.connect();
  let client: KubeClient | null = null;
  try {
    if (o.kubeconfig) client = await KubeClient.load(o.kubeconfig);
    // Both modes on: without namespaces the proxy's endpoints are still elected (there is no data path).
    const kube = client ? { client, modes: { l7: true, l3: true } } : undefined;
    await seedGatewayRecords(await openBuckets(nc), o.topology, o.gateways, o.hostOf, o.progress, kube);
  } finally {
    client?.close();
    await nc.close();
  }
}

/** Each tunnel endpoint's publicIP is its node's underlay address, unless the manifest sets one. */
export function withTunnelAddresses(gw: Gateway, hostOf: (node: string) => NodeHost | undefined): Gateway {
  const endpoints = gw.spec.endpoints.map((ep) => {
    const ip = ep.type === "tunnel" ? hostOf(ep.nodeName)?.underlayIP : undefined;
    return ip && ep.publicIP === undefined ? { ...ep, publicIP: ip } : ep;
  });
  return { ...gw, spec: { ...gw.spec, endpoints } };
}
