// KubeInformer and KubeClient (lib/kube) against the Kubernetes API double (test/kube-api), through
// client-node 1.4.0: the cache follows creates, updates and deletes; it survives dropped watches, an API
// server restart and an expired resourceVersion (410, re-list, deletes reconciled); it re-lists every
// resyncMs.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KubeClient, KubeInformer, type InformerChange } from "../../lib/kube";
import { systemClock } from "../../shared/clock";
import { silentLogger } from "../../shared/log";
import { startKubeApi, writeKubeconfig, type KubeApi } from "../kube-api/server";
import { eventually } from "../helpers/fleet";

let api: KubeApi;
let dir: string;
let kubeconfig: string;
const running: KubeInformer[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kube-informer-"));
  api = await startKubeApi({ bookmarkIntervalMs: 200 });
  kubeconfig = await writeKubeconfig(dir, api.url);
});

afterEach(async () => {
  for (const i of running.splice(0)) await i.stop();
});

afterAll(async () => {
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function call(method: string, path: string, body?: unknown, retried = false): Promise<void> {
  let res: Response;
  try {
    res = await fetch(api.url + path, {
      method,
      headers:
        body === undefined
          ? {}
          : { "Content-Type": method === "PATCH" ? "application/merge-patch+json" : "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    // This test's own kept-alive connection, closed by an API server restart: once more, on a new one.
    if (retried) throw err;
    return call(method, path, body, true);
  }
  expect(res.status, `${method} ${path}: ${await res.clone().text()}`).toBeLessThan(300);
}

const createNode = (name: string, labels: Record<string, string> = {}) =>
  call("POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name, labels } });
const labelNode = (name: string, labels: Record<string, string>) =>
  call("PATCH", `/api/v1/nodes/${name}`, { metadata: { labels } });
const deleteNode = (name: string) => call("DELETE", `/api/v1/nodes/${name}`);

async function startInformer(opts: { resyncMs?: number; labelSelector?: string } = {}) {
  const client = await KubeClient.load(kubeconfig);
  const changes: string[] = [];
  let synced = 0;
  const informer = new KubeInformer({
    client,
    path: "/api/v1/nodes",
    ...(opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
    onChange: (c: InformerChange) => changes.push(`${c.type} ${c.object.metadata.name}`),
    onSynced: () => synced++,
    resyncMs: opts.resyncMs ?? 60_000,
    backoffMs: 50,
    maxBackoffMs: 400,
    clock: systemClock,
    log: silentLogger(),
  });
  informer.start();
  running.push(informer);
  const names = () =>
    informer
      .list()
      .map((o) => o.metadata.name)
      .sort();
  return { informer, client, changes, names, synced: () => synced };
}

async function storeNames(selector = ""): Promise<string[]> {
  const res = await fetch(`${api.url}/api/v1/nodes${selector ? `?labelSelector=${encodeURIComponent(selector)}` : ""}`);
  const list = (await res.json()) as { items: { metadata: { name: string } }[] };
  return list.items.map((i) => i.metadata.name).sort();
}

const sameAsStore = async (i: Awaited<ReturnType<typeof startInformer>>, selector = "") => {
  const want = await storeNames(selector);
  return JSON.stringify(i.names()) === JSON.stringify(want) ? want : undefined;
};

describe("KubeInformer", () => {
  it("lists, then follows creates, updates and deletes in order", async () => {
    await createNode("a-1", { pool: "a" });
    const i = await startInformer();
    await eventually("synced", 5_000, async () => (i.synced() > 0 ? true : undefined));
    expect(i.names()).toContain("a-1");
    await createNode("a-2");
    await labelNode("a-2", { pool: "a" });
    await deleteNode("a-1");
    await eventually("the cache follows the store", 5_000, () => sameAsStore(i));
    const tail = i.changes.filter((c) => c.endsWith("a-2") || c === "deleted a-1");
    expect(tail).toEqual(["added a-2", "updated a-2", "deleted a-1"]);
    expect(i.informer.get("a-2")?.metadata.labels).toEqual({ pool: "a" });
  });

  it("keeps a label selector", async () => {
    await createNode("sel-1", { zone: "x" });
    await createNode("sel-2", { zone: "y" });
    const i = await startInformer({ labelSelector: "zone=x" });
    await eventually("only zone x", 5_000, () => sameAsStore(i, "zone=x"));
    expect(i.names()).not.toContain("sel-2");
  });

  it("resumes after ended and dropped watches and misses nothing made meanwhile", async () => {
    const i = await startInformer();
    await eventually("synced", 5_000, async () => (i.synced() > 0 ? true : undefined));
    for (let n = 0; n < 12; n++) {
      await eventually(`watch ${n + 1} open`, 5_000, async () => (api.openWatches() > 0 ? true : undefined));
      const watches = i.informer.stats.watches;
      if (n % 2 === 0) api.endWatches();
      else api.dropWatches();
      await createNode(`drop-${n}`);
      await eventually(`watch ${n + 2}`, 5_000, async () => (i.informer.stats.watches > watches ? true : undefined));
    }
    await eventually("every node made while watches dropped", 10_000, () => sameAsStore(i));
    expect(i.informer.stats.watches).toBeGreaterThan(12);
    expect(i.informer.stats.lists).toBe(1); // resumed from its resourceVersion each time, never re-listed
  });

  it("survives an API server restart, retrying with backoff until it answers", async () => {
    const i = await startInformer();
    await eventually("synced", 5_000, async () => (i.synced() > 0 ? true : undefined));
    const failuresBefore = i.informer.stats.failures;
    await api.close();
    await new Promise((r) => setTimeout(r, 600)); // refused connections meanwhile
    await api.restart();
    await createNode("after-restart");
    await eventually("the node made after the restart", 10_000, () => sameAsStore(i));
    expect(i.informer.stats.failures).toBeGreaterThan(failuresBefore);
  });

  it("re-lists on 410 Expired and reports what was deleted while it could not watch", async () => {
    await createNode("gone-1");
    await createNode("kept-1");
    const i = await startInformer();
    await eventually("synced", 5_000, () => sameAsStore(i));
    await api.close(); // no watch while the history moves on and is compacted
    await api.restart();
    api.dropWatches();
    await deleteNode("gone-1");
    await createNode("new-1");
    api.store.compact();
    await eventually("reconciled after 410", 10_000, () => sameAsStore(i));
    expect(i.changes).toContain("deleted gone-1");
    expect(i.changes).toContain("added new-1");
    expect(i.informer.stats.lists).toBeGreaterThanOrEqual(2);
  });

  it("resumes a quiet watch from its last bookmark, without re-listing, after the history moved on", async () => {
    const i = await startInformer();
    await eventually("synced", 5_000, () => sameAsStore(i));
    // Writes elsewhere move the resourceVersion on; only bookmarks (every 200 ms here) tell this watch so.
    for (let n = 0; n < 3; n++)
      await call("POST", "/api/v1/namespaces/default/configmaps", { metadata: { name: `moved-on-${n}` }, data: {} });
    const movedTo = Number(api.store.resourceVersion);
    await new Promise((r) => setTimeout(r, 600)); // a bookmark or two
    api.store.compact(); // nothing before movedTo can be resumed from any more
    api.endWatches(); // the watch's time is up, as the API server ends watches
    await createNode("after-bookmark");
    await eventually("the node made after the watch ended", 5_000, () => sameAsStore(i));
    expect(Number(api.store.resourceVersion)).toBeGreaterThan(movedTo);
    expect(i.informer.stats.lists).toBe(1);
  });

  it("stops while the API server is down, not waiting on its retries", async () => {
    const i = await startInformer();
    await eventually("synced", 5_000, async () => (i.synced() > 0 ? true : undefined));
    await api.close(); // requests now fail, over and over
    await new Promise((r) => setTimeout(r, 300));
    const stopped = await Promise.race([
      i.informer.stop().then(() => "stopped"),
      new Promise((r) => setTimeout(() => r("still running after 5 s"), 5_000)),
    ]);
    expect(stopped).toBe("stopped");
    const watches = i.informer.stats.watches;
    await api.restart();
    await new Promise((r) => setTimeout(r, 500));
    expect(i.informer.stats.watches).toBe(watches); // nothing after stop()
  });

  it("re-lists every resyncMs even with a healthy watch", async () => {
    const i = await startInformer({ resyncMs: 300 });
    await eventually("three lists", 5_000, async () => (i.informer.stats.lists >= 3 ? true : undefined));
    expect(await sameAsStore(i)).toBeDefined();
    expect(i.informer.stats.failures).toBe(0);
  });
});
