// Reading, applying and deleting Gateway records in the hub's KV. `applyGateway` is what `kubectl apply` is
// to the Gateway CR: it replaces metadata and spec, keeps the status (the coordinator's), and retries a lost
// compare-and-swap, so it is idempotent and safe beside a running coordinator.
// - A solo node's record (labelled raven.openyurt.io/solo) is the coordinator's: applying one back as
//   `raven gateways -o yaml` printed it is `unchanged`; anything else about it is refused, so a solo node is
//   never turned into a user Gateway (a second unit for the same node) by accident.
// - Terms only grow, also across a delete: a Gateway created where one was deleted starts at the deleted
//   key's revision, which no term it ever had can exceed (each term change was a write of that key), so
//   gateways still holding the old term obey the new record's first election. This holds while the delete
//   marker does (Raven never purges it; a purge or a lost bucket would start the name at term 0 again).
import type { KV } from "@nats-io/kv";
import { CasConflictError, TopologyError } from "./errors";
import { LABEL_SOLO, gatewayKey, isSolo, soloKey, type Gateway } from "./gateway";
import { parseGatewayRecord } from "./gateway-manifest";
import { casPut, readAll, readJson } from "./kv";

export type ApplyResult = "created" | "updated" | "unchanged";

/** Same metadata and spec: applying one over the other changes nothing. */
export const sameDefinition = (a: Gateway, b: Gateway) =>
  JSON.stringify(a.spec) === JSON.stringify(b.spec) && JSON.stringify(a.metadata) === JSON.stringify(b.metadata);

function soloRefused(name: string, what: string): TopologyError {
  return new TopologyError(
    `gateway ${name} is node ${name}'s solo record (label ${LABEL_SOLO}); the coordinator keeps it, so it cannot be ${what}. ` +
      `To give the node a Gateway, label it into a node pool (apps.openyurt.io/nodepool) and apply a Gateway for that pool.`,
  );
}

/**
 * Throws what applyGateway would refuse without writing (a solo record changed or made by hand), so that a
 * file's objects can all be checked before the first is written.
 */
export async function checkApplicable(kv: KV, gw: Gateway): Promise<void> {
  if (!isSolo(gw)) return;
  const key = soloKey(gw.metadata.name);
  const current = await readJson(kv, key, (raw) => parseGatewayRecord(raw, key));
  if (current.value && sameDefinition(current.value, gw)) return;
  throw soloRefused(gw.metadata.name, current.value ? "changed" : "created by hand");
}

export async function applyGateway(kv: KV, gw: Gateway, attempts = 10): Promise<ApplyResult> {
  const name = gw.metadata.name;
  if (isSolo(gw)) {
    await checkApplicable(kv, gw);
    return "unchanged";
  }
  const key = gatewayKey(name);
  for (let i = 0; i < attempts; i++) {
    const current = await readJson(kv, key, (raw) => parseGatewayRecord(raw, key));
    if (current.value && sameDefinition(current.value, gw)) return "unchanged";
    const status = current.value?.status ?? { ...gw.status, term: Math.max(gw.status.term, current.revision) };
    try {
      await casPut(kv, key, { ...gw, status }, current.revision);
      return current.value ? "updated" : "created";
    } catch (err) {
      if (!(err instanceof CasConflictError)) throw err;
    }
  }
  throw new CasConflictError(key);
}

/** Deletes a user Gateway; its nodes fall back as if it had never been applied (solo, or another Gateway's). */
export async function deleteGateway(kv: KV, name: string): Promise<void> {
  const key = gatewayKey(name);
  const current = await readJson(kv, key, (raw) => parseGatewayRecord(raw, key));
  if (current.value === null) {
    const solo = await readJson(kv, soloKey(name), (raw) => parseGatewayRecord(raw, soloKey(name)));
    if (solo.value !== null) throw soloRefused(name, "deleted");
    throw new TopologyError(`gateway ${name}: no such Gateway`);
  }
  await kv.delete(key, { previousSeq: current.revision });
}

export async function listGateways(kv: KV, onBad: (key: string, err: unknown) => void = () => {}): Promise<Gateway[]> {
  const all = await readAll(kv, ">", (raw, key) => parseGatewayRecord(raw, key), onBad);
  return [...all.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, v]) => v.value!)
    .filter((g) => g !== null);
}
