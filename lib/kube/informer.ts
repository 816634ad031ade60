// KubeInformer: a cache of one Kubernetes collection, kept by list-and-watch, that never gives up.
// client-node 1.4.0's ListWatch stops for good on any error but 410 (an API server restart, a dropped
// connection, a 500) and re-watches through a fresh agent each time; this one keeps client-node's Watch and
// KubeConfig (KubeClient, one agent) and runs the loop itself:
// - list (the cache is reconciled with the result: added, updated and deleted objects are reported), then
//   watch from the list's resourceVersion with bookmarks, following ADDED/MODIFIED/DELETED/BOOKMARK;
// - a watch that ends cleanly is resumed from the last resourceVersion seen at once; 410 Expired (as an
//   ERROR event or a status) re-lists;
// - any failure is retried after a backoff that doubles from backoffMs to maxBackoffMs, with jitter (half to
//   full), so that many agents do not hammer a recovering API server in step; a watch that ends in less than
//   a second without an event counts as a failure (no spinning on a server that closes at once);
// - every resyncMs it re-lists even with a healthy watch, so a missed event (a bug anywhere between etcd and
//   here) is repaired within resyncMs.
// Changes are reported in order, one callback at a time, synchronously from the stream.
import type { Clock, TimerHandle } from "../../shared/clock";
import { describeError } from "../../shared/errors";
import type { Logger } from "../../shared/log";
import { KubeApiError, type KubeClient, type WatchEvent } from "./client";

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown };
  [k: string]: unknown;
};

export type InformerChange = { type: "added" | "updated" | "deleted"; object: KubeObject };

export type InformerOptions = Readonly<{
  client: KubeClient;
  /** The collection, e.g. /api/v1/nodes or /apis/raven.openyurt.io/v1beta1/gateways. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  onChange: (c: InformerChange) => void;
  /** Told after every list: the cache is complete as of then (the first one: the informer has synced). */
  onSynced?: () => void;
  resyncMs?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  clock: Clock;
  log: Logger;
  /** [0, 1), for the jitter; Math.random by default (tests pass their own). */
  random?: () => number;
}>;

export type InformerStats = { lists: number; watches: number; failures: number };

/** A JSON object (not null, not an array). */
export const isRecord = (o: unknown): o is Record<string, unknown> =>
  typeof o === "object" && o !== null && !Array.isArray(o);

/** An object with metadata.name: what every API object is. */
export const isKubeObject = (o: unknown): o is KubeObject =>
  typeof o === "object" &&
  o !== null &&
  "metadata" in o &&
  typeof o.metadata === "object" &&
  o.metadata !== null &&
  "name" in o.metadata &&
  typeof o.metadata.name === "string";

const keyOf = (o: KubeObject) => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;

/** How a watch ended: resume from the resourceVersion, re-list, or stop. */
type WatchEnd = "resume" | "relist" | "stopped";

export class KubeInformer {
  private readonly cache = new Map<string, KubeObject>();
  private resourceVersion = "";
  private stopped = false;
  /** Ends the current watch from here (stop, resync), also while its request is still being answered. */
  private endWatch: ((end: WatchEnd) => void) | null = null;
  private resyncDue = false;
  private resyncTimer: TimerHandle | null = null;
  private wake: (() => void) | null = null;
  private failures = 0;
  readonly stats: InformerStats = { lists: 0, watches: 0, failures: 0 };
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly opts: InformerOptions) {}

  start(): void {
    const { clock } = this.opts;
    this.resyncTimer = clock.setInterval(() => {
      this.resyncDue = true;
      this.endWatch?.("relist");
    }, this.opts.resyncMs ?? 300_000);
    this.done = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer) this.opts.clock.clearInterval(this.resyncTimer);
    this.endWatch?.("stopped");
    this.wake?.();
    await this.done;
  }

  list(): KubeObject[] {
    return [...this.cache.values()];
  }

  get(name: string, namespace = ""): KubeObject | undefined {
    return this.cache.get(`${namespace}/${name}`);
  }

  private async run(): Promise<void> {
    const { log } = this.opts;
    while (!this.stopped) {
      try {
        if (this.resourceVersion === "" || this.resyncDue) await this.relist();
        const startedAt = this.opts.clock.now();
        let events = 0;
        const end = await this.watchOnce(() => events++);
        if (end === "stopped") return;
        if (end === "relist") this.resourceVersion = "";
        else if (events === 0 && this.opts.clock.now() - startedAt < 1_000 && !this.resyncDue)
          throw new KubeApiError(0, "Closed", `${this.opts.path}: the watch ended at once`);
        this.failures = 0;
      } catch (err) {
        if (this.stopped) return;
        this.failures++;
        this.stats.failures++;
        const wait = this.backoff();
        log.warn({ path: this.opts.path, err: describeError(err), retryInMs: wait }, "kube informer: retrying");
        await this.sleep(wait);
      }
    }
  }

  private backoff(): number {
    const base = this.opts.backoffMs ?? 200;
    const max = this.opts.maxBackoffMs ?? 10_000;
    const full = Math.min(max, base * 2 ** Math.min(this.failures - 1, 16));
    return Math.round(full * (0.5 + 0.5 * (this.opts.random ?? Math.random)()));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = this.opts.clock.setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        this.opts.clock.clearTimeout(t);
        this.wake = null;
        resolve();
      };
    });
  }

  private query(extra: Record<string, string>): Record<string, string> {
    const q: Record<string, string> = { ...extra };
    if (this.opts.labelSelector) q.labelSelector = this.opts.labelSelector;
    if (this.opts.fieldSelector) q.fieldSelector = this.opts.fieldSelector;
    return q;
  }

  /** Lists the collection and reconciles the cache with it, reporting every difference. */
  private async relist(): Promise<void> {
    this.resyncDue = false;
    const q = new URLSearchParams(this.query({}));
    const path = q.size > 0 ? `${this.opts.path}?${q}` : this.opts.path;
    const list = await this.opts.client.request("GET", path);
    if (this.stopped) return; // stopped meanwhile: nothing more is reported
    const items = isRecord(list) && Array.isArray(list.items) ? list.items.filter(isKubeObject) : [];
    const seen = new Set<string>();
    for (const o of items) {
      const key = keyOf(o);
      seen.add(key);
      const old = this.cache.get(key);
      this.cache.set(key, o);
      if (!old) this.opts.onChange({ type: "added", object: o });
      else if (old.metadata.resourceVersion !== o.metadata.resourceVersion)
        this.opts.onChange({ type: "updated", object: o });
    }
    for (const [key, old] of this.cache)
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.opts.onChange({ type: "deleted", object: old });
      }
    const meta = isRecord(list) && isRecord(list.metadata) ? list.metadata : {};
    this.resourceVersion = typeof meta.resourceVersion === "string" ? meta.resourceVersion : "";
    this.stats.lists++;
    this.opts.onSynced?.();
  }

  /**
   * One watch from the current resourceVersion. It settles once: by the stream's end or failure, or by
   * `endWatch` (stop, resync), which also aborts the request, answered or not.
   */
  private watchOnce(onEvent: () => void): Promise<WatchEnd> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let abort: (() => void) | null = null;
      let expired = false;
      const settle = (outcome: WatchEnd | Error) => {
        if (settled) return;
        settled = true;
        this.endWatch = null;
        abort?.();
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      this.endWatch = settle;
      const handle = (e: WatchEvent) => {
        if (settled) return;
        const o = e.object;
        if (e.type === "ERROR") {
          const code = isRecord(o) ? o.code : undefined;
          if (code === 410) expired = true;
          else this.opts.log.warn({ path: this.opts.path, status: o }, "kube informer: watch error event");
          return;
        }
        // A BOOKMARK carries nothing but the resourceVersion to resume from: taken, so that a quiet
        // collection resumes after a watch timeout instead of re-listing on 410.
        const rv = isRecord(o) && isRecord(o.metadata) ? o.metadata.resourceVersion : undefined;
        if (e.type === "BOOKMARK") {
          if (typeof rv === "string" && rv !== "") this.resourceVersion = rv;
          return;
        }
        if (!isKubeObject(o)) return;
        onEvent();
        if (typeof rv === "string" && rv !== "") this.resourceVersion = rv;
        const key = keyOf(o);
        if (e.type === "ADDED" || e.type === "MODIFIED") {
          const existed = this.cache.has(key);
          this.cache.set(key, o);
          this.opts.onChange({ type: existed ? "updated" : "added", object: o });
        } else if (e.type === "DELETED" && this.cache.delete(key)) {
          this.opts.onChange({ type: "deleted", object: o });
        }
      };
      const done = (err: unknown) => {
        if (expired) return settle("relist");
        if (err === null || err === undefined) return settle("resume");
        const status = isRecord(err) ? err.statusCode : undefined;
        if (status === 410) return settle("relist");
        settle(err instanceof Error ? err : new Error(String(err)));
      };
      this.stats.watches++;
      this.opts.client
        .watch(
          this.opts.path,
          this.query({ resourceVersion: this.resourceVersion, allowWatchBookmarks: "true" }),
          handle,
          done,
        )
        .then(
          (a) => {
            abort = a;
            if (settled) a();
          },
          (err: unknown) => settle(err instanceof Error ? err : new Error(String(err))),
        );
    });
  }
}
