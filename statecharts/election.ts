// The election rule, pure and deterministic. Per endpoint type, keep the current actives that are still
// healthy and still in the spec (sticky: a healthy active is never preempted), then fill the remaining
// replicas from healthy candidates in spec order. The same inputs always give the same answer, in spec order,
// so two coordinators (or a replayed log) agree. Flapping is damped upstream: a candidate only counts as
// healthy again after several consecutive heartbeats (HealthTracker's rise count).
import { ENDPOINT_TYPES, type Endpoint, type EndpointType } from "../shared/gateway";

export type ElectionInput = Readonly<{
  endpoints: readonly Endpoint[];
  replicas: Readonly<Record<EndpointType, number>>;
  healthy: ReadonlySet<string>;
  current: readonly Endpoint[];
}>;

const keyOf = (e: Pick<Endpoint, "nodeName" | "type">) => `${e.type}/${e.nodeName}`;

export function electActive({ endpoints, replicas, healthy, current }: ElectionInput): Endpoint[] {
  const chosen = new Set<string>();
  for (const type of ENDPOINT_TYPES) {
    const ofType = endpoints.filter((e) => e.type === type && healthy.has(e.nodeName));
    const inSpec = new Set(ofType.map(keyOf));
    const picked: string[] = [];
    for (const cur of current) {
      if (picked.length >= replicas[type]) break;
      if (cur.type === type && inSpec.has(keyOf(cur))) picked.push(keyOf(cur));
    }
    for (const e of ofType) {
      if (picked.length >= replicas[type]) break;
      if (!picked.includes(keyOf(e))) picked.push(keyOf(e));
    }
    for (const k of picked) chosen.add(k);
  }
  return endpoints.filter((e) => chosen.has(keyOf(e)));
}

export function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  const ka = a.map(keyOf).sort();
  const kb = b.map(keyOf).sort();
  return ka.every((k, i) => k === kb[i]);
}

/** Why the election fills fewer than the wanted replicas, or undefined when it fills them all. */
export function shortfall(
  active: readonly Endpoint[],
  replicas: Readonly<Record<EndpointType, number>>,
  endpoints: readonly Endpoint[],
): string | undefined {
  const missing: string[] = [];
  for (const type of ENDPOINT_TYPES) {
    const want = Math.min(replicas[type], endpoints.filter((e) => e.type === type).length);
    const have = active.filter((e) => e.type === type).length;
    if (have < want) missing.push(`${type} ${have}/${want}`);
  }
  return missing.length ? `no healthy candidate for ${missing.join(", ")}` : undefined;
}
