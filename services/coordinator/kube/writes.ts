// The writes Raven makes to the API server, one function each, given what to write: a Gateway's mirrored
// status (merge-patch on /status, the content type set explicitly) with an Event for each endpoint elected or
// lost since the status it replaces, the edge-tunnel-nodes ConfigMap, and Events. Each skips when the object
// already says it; when and how often they run is kube-sync.ts's (through its WriteQueue).
import { GATEWAYS_PATH, isRecord, stringMap, type KubeClient, type KubeObject } from "../../../lib/kube";
import type { Clock } from "../../../shared/clock";
import { describeError } from "../../../shared/errors";
import { GATEWAY_API_VERSION } from "../../../shared/gateway";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import { EventReason, HOSTS_CONFIGMAP, activeChanges, objectActives, sameStatus, type MirroredStatus } from "./objects";

const MERGE_PATCH = "application/merge-patch+json";
/** Events about cluster-scoped objects live in `default`, as kubectl describe looks for them. */
const EVENTS_NAMESPACE = "default";
const COMPONENT = "raven-coordinator";

export const configMapsPath = (ns: string) => `/api/v1/namespaces/${ns}/configmaps`;

/** Creates Events about Gateways, with names unique to this process. */
export class GatewayEvents {
  private seq = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly clock: Clock,
  ) {}

  async record(
    gateway: string,
    reason: EventReason,
    type: "Normal" | "Warning",
    message: string,
    obj: KubeObject | undefined,
  ): Promise<void> {
    const wall = this.clock.wallMs();
    const now = new Date(wall).toISOString().replace(/\.\d+Z$/, "Z");
    const name = `${gateway}.${wall.toString(16)}${(this.seq++ % 4096).toString(16)}`;
    await this.client.request("POST", `/api/v1/namespaces/${EVENTS_NAMESPACE}/events`, {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name, namespace: EVENTS_NAMESPACE },
      involvedObject: {
        apiVersion: GATEWAY_API_VERSION,
        kind: "Gateway",
        name: gateway,
        ...(obj?.metadata.uid ? { uid: obj.metadata.uid } : {}),
        ...(obj?.metadata.resourceVersion ? { resourceVersion: obj.metadata.resourceVersion } : {}),
      },
      reason,
      message,
      type,
      source: { component: COMPONENT },
      reportingComponent: COMPONENT,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
    counters.inc("raven_kube_events_total", { reason });
  }
}

/**
 * Patches the Gateway object's status to `status` unless it says so already; then an Event per endpoint that
 * became or stopped being active since what the object said. An Event that cannot be recorded is logged, not
 * retried: the status it reports is written.
 */
export async function writeGatewayStatus(
  client: KubeClient,
  events: GatewayEvents,
  log: Logger,
  obj: KubeObject,
  status: MirroredStatus,
  term: number,
): Promise<void> {
  const name = obj.metadata.name;
  const current = isRecord(obj.status) ? obj.status : {};
  if (sameStatus({ nodes: current.nodes ?? [], activeEndpoints: current.activeEndpoints ?? [] }, status)) return;
  await client.request("PATCH", `${GATEWAYS_PATH}/${name}/status`, { status }, MERGE_PATCH);
  counters.inc("raven_kube_status_patches_total");
  const { elected, lost } = activeChanges(objectActives(obj), status.activeEndpoints);
  const pending = [
    ...elected.map((ep) => events.record(name, EventReason.Elected, "Normal", `${ep} is active (term ${term})`, obj)),
    ...lost.map((ep) =>
      events.record(name, EventReason.Lost, "Normal", `${ep} is no longer active (term ${term})`, obj),
    ),
  ];
  for (const r of await Promise.allSettled(pending))
    if (r.status === "rejected") log.warn({ gateway: name, err: describeError(r.reason) }, "could not record an Event");
}

/** Writes the hosts map into kube-system/edge-tunnel-nodes (`current`: the ConfigMap as last seen, if any). */
export async function writeHostsMap(client: KubeClient, current: KubeObject | undefined, text: string): Promise<void> {
  const { namespace, name, key } = HOSTS_CONFIGMAP;
  if (current && stringMap(current.data)[key] === text) return;
  if (current) {
    await client.request("PATCH", `${configMapsPath(namespace)}/${name}`, { data: { [key]: text } }, MERGE_PATCH);
  } else {
    await client.request("POST", configMapsPath(namespace), {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name, namespace },
      data: { [key]: text },
    });
  }
  counters.inc("raven_kube_hosts_writes_total");
}
