// An etcd-like in-memory store for the Kubernetes API test double. One global resourceVersion counter; every
// create/update/delete bumps it and records an ADDED/MODIFIED/DELETED event in a bounded history (oldest
// dropped first, or all at once by `compact()`, like etcd compaction). Objects are keyed by resource +
// namespace + name and always handed out as copies. Create fills in uid, creationTimestamp, resourceVersion
// and generation 1; an update that changes anything but metadata and status bumps generation; an update
// that changes nothing is a no-op (no new resourceVersion, no event). Errors are ApiErrors that carry the
// API server's Status (404 NotFound, 409 AlreadyExists, 409 Conflict on a stale resourceVersion).
import { randomUUID } from "node:crypto";
import { alreadyExists, conflict, notFound, type ResourceRef } from "./errors";
import { clone, deepEqual, meta, str, type JsonObject } from "./json";
import { refKey } from "./registry";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

export interface StoreEvent {
  rv: number;
  type: EventType;
  /** refKey of the resource (`group/resource`). */
  resource: string;
  object: JsonObject;
}

export interface WriteOptions {
  /** Validate and compute the result, store nothing (`?dryRun=All`). */
  dryRun?: boolean;
}

export function timestamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

function objectKey(o: JsonObject): string {
  const m = meta(o);
  return `${str(m["namespace"]) ?? ""}/${str(m["name"]) ?? ""}`;
}

function withoutMetaAndStatus(o: JsonObject): JsonObject {
  const { metadata: _m, status: _s, ...rest } = o;
  return rest;
}

export class Store {
  private rv = 0;
  private readonly objects = new Map<string, Map<string, JsonObject>>();
  private readonly history: StoreEvent[] = [];
  /** Events with rv <= compactedRV are gone from history. */
  private compactedRV = 0;
  private readonly listeners = new Set<(e: StoreEvent) => void>();

  constructor(readonly historyLimit = 5000) {}

  /** The current resourceVersion, as the API server writes it (a decimal string). */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** The oldest resourceVersion a watch may still resume from. */
  get oldestResumable(): number {
    return this.compactedRV;
  }

  private bucket(ref: ResourceRef): Map<string, JsonObject> {
    const k = refKey(ref);
    let b = this.objects.get(k);
    if (!b) {
      b = new Map();
      this.objects.set(k, b);
    }
    return b;
  }

  tryGet(ref: ResourceRef, namespace: string, name: string): JsonObject | undefined {
    const o = this.objects.get(refKey(ref))?.get(`${namespace}/${name}`);
    return o && clone(o);
  }

  get(ref: ResourceRef, namespace: string, name: string): JsonObject {
    const o = this.tryGet(ref, namespace, name);
    if (!o) throw notFound(ref, name);
    return o;
  }

  /** Objects of a resource, in one namespace or (namespace undefined) all, sorted by namespace and name. */
  list(ref: ResourceRef, namespace?: string): JsonObject[] {
    const b = this.objects.get(refKey(ref));
    if (!b) return [];
    return [...b.entries()]
      .filter(([k]) => namespace === undefined || k.startsWith(`${namespace}/`))
      .sort(([a], [b2]) => a.localeCompare(b2))
      .map(([, o]) => clone(o));
  }

  private record(ref: ResourceRef, type: EventType, object: JsonObject): void {
    const e: StoreEvent = { rv: this.rv, type, resource: refKey(ref), object: clone(object) };
    this.history.push(e);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift();
      if (dropped) this.compactedRV = dropped.rv;
    }
    for (const l of this.listeners) l(e);
  }

  /** `obj` must carry metadata.name (and metadata.namespace for namespaced resources). */
  create(ref: ResourceRef, obj: JsonObject, opts: WriteOptions = {}): JsonObject {
    const o = clone(obj);
    const m = meta(o);
    const name = str(m["name"]) ?? "";
    if (this.objects.get(refKey(ref))?.has(objectKey(o))) throw alreadyExists(ref, name);
    m["uid"] = randomUUID();
    m["creationTimestamp"] = timestamp();
    m["generation"] = 1;
    delete m["resourceVersion"];
    delete m["deletionTimestamp"];
    if (opts.dryRun) return o;
    this.rv++;
    m["resourceVersion"] = String(this.rv);
    this.bucket(ref).set(objectKey(o), clone(o));
    this.record(ref, "ADDED", o);
    return o;
  }

  /**
   * Replaces an object by `next` (same namespace/name). A `metadata.resourceVersion` in `next` must match the
   * stored one (409 Conflict otherwise). uid and creationTimestamp are kept from the stored object.
   */
  update(ref: ResourceRef, next: JsonObject, opts: WriteOptions = {}): JsonObject {
    const o = clone(next);
    const m = meta(o);
    const name = str(m["name"]) ?? "";
    const current = this.objects.get(refKey(ref))?.get(objectKey(o));
    if (!current) throw notFound(ref, name);
    const cm = meta(current);
    const expected = str(m["resourceVersion"]);
    if (expected !== undefined && expected !== "" && expected !== cm["resourceVersion"]) throw conflict(ref, name);
    for (const k of ["uid", "creationTimestamp", "resourceVersion"]) {
      const v = cm[k];
      if (v !== undefined) m[k] = v;
    }
    const generation = typeof cm["generation"] === "number" ? cm["generation"] : 1;
    m["generation"] = deepEqual(withoutMetaAndStatus(o), withoutMetaAndStatus(current)) ? generation : generation + 1;
    if (deepEqual(o, current) || opts.dryRun) return o;
    this.rv++;
    m["resourceVersion"] = String(this.rv);
    this.bucket(ref).set(objectKey(o), clone(o));
    this.record(ref, "MODIFIED", o);
    return o;
  }

  delete(ref: ResourceRef, namespace: string, name: string, opts: WriteOptions = {}): JsonObject {
    const current = this.get(ref, namespace, name);
    if (opts.dryRun) return current;
    this.rv++;
    meta(current)["resourceVersion"] = String(this.rv);
    this.bucket(ref).delete(`${namespace}/${name}`);
    this.record(ref, "DELETED", current);
    return current;
  }

  /** Events after `rv` (copies), or "expired" when some of them were already dropped from history. */
  eventsAfter(rv: number): StoreEvent[] | "expired" {
    if (rv < this.compactedRV) return "expired";
    return this.history.filter((e) => e.rv > rv).map((e) => ({ ...e, object: clone(e.object) }));
  }

  /** Drops the whole history, like an etcd compaction at the current revision. */
  compact(): void {
    this.compactedRV = this.rv;
    this.history.length = 0;
  }

  /** Calls `fn` with every event from now on (the object is shared: copy before changing it). */
  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
