// Watch streams of the Kubernetes API test double: chunked application/json, one `{"type","object"}` per line.
// With a resourceVersion, every later event is replayed from the store's history, then live events follow; a
// resourceVersion older than the history gets one ERROR event (Status 410 Expired) and the stream ends.
// Without one (or "0"), a synthetic ADDED per current object comes first. BOOKMARKs (only apiVersion, kind,
// metadata.resourceVersion) are sent after every `bookmarkIntervalMs` of quiet when allowWatchBookmarks=true;
// timeoutSeconds ends the stream cleanly. Events are filtered by namespace and selectors on the new object
// (an object leaving a label selector is not turned into DELETED as the real server does).
import type { ServerResponse } from "node:http";
import { badRequest, statusBody } from "./errors";
import { meta, str, type JsonObject } from "./json";
import { refKey, type ResourceInfo } from "./registry";
import type { Matcher } from "./selectors";
import type { EventType, Store, StoreEvent } from "./store";

export interface WatchRequest {
  info: ResourceInfo;
  version: string;
  /** undefined: all namespaces (or a cluster-scoped resource). */
  namespace: string | undefined;
  match: Matcher;
  resourceVersion: string;
  allowBookmarks: boolean;
  timeoutSeconds: number | undefined;
  bookmarkIntervalMs: number;
  present: (o: JsonObject) => JsonObject;
}

/** Serves one watch on `res`; returns once the stream is set up. `watches` tracks open streams. */
export function serveWatch(store: Store, w: WatchRequest, res: ServerResponse, watches: Set<ServerResponse>): void {
  const key = refKey(w.info);
  let rvNumber = 0;
  if (w.resourceVersion !== "" && w.resourceVersion !== "0") {
    rvNumber = Number(w.resourceVersion);
    if (!Number.isInteger(rvNumber) || rvNumber < 0) {
      throw badRequest(`resourceVersion: Invalid value: "${w.resourceVersion}": must be a non-negative integer`);
    }
  }
  const wanted = (o: JsonObject): boolean =>
    (w.namespace === undefined || str(meta(o)["namespace"]) === w.namespace) && w.match(o);
  res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache, private" });
  res.flushHeaders();
  let lastSent = Date.now();
  const send = (type: EventType | "BOOKMARK" | "ERROR", object: JsonObject): void => {
    lastSent = Date.now();
    res.write(`${JSON.stringify({ type, object })}\n`);
  };

  if (rvNumber === 0) {
    for (const o of store.list(w.info, w.namespace)) if (wanted(o)) send("ADDED", w.present(o));
  } else {
    const replay = store.eventsAfter(rvNumber);
    if (replay === "expired") {
      const oldest = store.oldestResumable + 1;
      send("ERROR", statusBody(410, "Expired", `too old resource version: ${rvNumber} (${oldest})`));
      res.end();
      return;
    }
    for (const e of replay) if (e.resource === key && wanted(e.object)) send(e.type, w.present(e.object));
  }

  watches.add(res);
  const unsubscribe = store.subscribe((e: StoreEvent) => {
    if (e.resource === key && wanted(e.object)) send(e.type, w.present(e.object));
  });
  const timers: NodeJS.Timeout[] = [];
  if (w.allowBookmarks) {
    const period = w.bookmarkIntervalMs;
    const bookmark = (): void => {
      if (Date.now() - lastSent < period) return;
      const apiVersion = w.info.group ? `${w.info.group}/${w.version}` : w.version;
      send("BOOKMARK", { kind: w.info.kind, apiVersion, metadata: { resourceVersion: store.resourceVersion } });
    };
    timers.push(setInterval(bookmark, Math.max(10, Math.floor(period / 4))));
  }
  const cleanup = (): void => {
    unsubscribe();
    for (const t of timers) clearInterval(t);
    watches.delete(res);
  };
  if (w.timeoutSeconds !== undefined && w.timeoutSeconds > 0) {
    timers.push(
      setTimeout(() => {
        cleanup();
        res.end();
      }, w.timeoutSeconds * 1000),
    );
  }
  res.on("close", cleanup);
}
