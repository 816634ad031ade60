// Reading and applying Gateway records in the hub's KV. `applyGateway` is what `kubectl apply` is to the
// Gateway CR: it replaces metadata and spec, keeps the status (the coordinator's), and retries a lost
// compare-and-swap, so it is idempotent and safe beside a running coordinator.
import type { KV } from "@nats-io/kv";
import { CasConflictError } from "./errors";
import { gatewayKey, parseGatewayRecord, type Gateway } from "./gateway";
import { casPut, readAll, readJson } from "./kv";

export type ApplyResult = "created" | "updated" | "unchanged";

export async function applyGateway(kv: KV, gw: Gateway, attempts = 10): Promise<ApplyResult> {
  const key = gatewayKey(gw.metadata.name);
  for (let i = 0; i < attempts; i++) {
    const current = await readJson(kv, key, (raw) => parseGatewayRecord(raw, key));
    const next: Gateway = { ...gw, status: current.value?.status ?? gw.status };
    if (
      current.value &&
      JSON.stringify(current.value.spec) === JSON.stringify(gw.spec) &&
      JSON.stringify(current.value.metadata) === JSON.stringify(gw.metadata)
    ) {
      return "unchanged";
    }
    try {
      await casPut(kv, key, next, current.revision);
      return current.value ? "updated" : "created";
    } catch (err) {
      if (!(err instanceof CasConflictError)) throw err;
    }
  }
  throw new CasConflictError(key);
}

export async function listGateways(kv: KV, onBad: (key: string, err: unknown) => void = () => {}): Promise<Gateway[]> {
  const all = await readAll(kv, ">", (raw, key) => parseGatewayRecord(raw, key), onBad);
  return [...all.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, v]) => v.value!)
    .filter((g) => g !== null);
}
