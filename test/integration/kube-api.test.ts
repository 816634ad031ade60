// The Kubernetes API test double (test/kube-api) checked for fidelity with the real kubectl 1.32: discovery,
// OpenAPI v3 (kubectl chooses server-side field validation, no --validate=false anywhere), apply/create/
// label/patch/watch on built-ins and on the Gateway CRD from deploy/, and raw protocol checks with fetch
// (Status errors, watch resume / 410 Expired / bookmarks, JSON patch, dropped watches, restart on the same port).
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { isObject, parseJson, str, type Json, type JsonObject } from "../kube-api/json";
import { startKubeApi, writeKubeconfig, type KubeApi } from "../kube-api/server";

const CRD_FILE = join(import.meta.dirname, "..", "..", "deploy", "gateway-crd.yaml");
const GW = "/apis/raven.openyurt.io/v1beta1/gateways";

let api: KubeApi;
let dir: string;
let kubeconfig: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kube-api-"));
  api = await startKubeApi({ bookmarkIntervalMs: 200 });
  kubeconfig = await writeKubeconfig(dir, api.url);
});

afterAll(async () => {
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

type Run = { code: number; stdout: string; stderr: string };

function kubectlArgs(args: string[]): string[] {
  return [...args, "--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache")];
}

function kubectl(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile("kubectl", kubectlArgs(args), { timeout: 20_000, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** kubectl that must succeed; returns stdout. */
async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  expect(r.stderr, `kubectl ${args.join(" ")}`).toBe("");
  expect(r.code).toBe(0);
  return r.stdout;
}

async function file(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

function gatewayYaml(extraSpec = ""): string {
  return [
    "apiVersion: raven.openyurt.io/v1beta1",
    "kind: Gateway",
    "metadata:",
    "  name: gw-a",
    "spec:",
    "  proxyConfig:",
    "    Replicas: 1",
    "  tunnelConfig:",
    "    Replicas: 1",
    "  endpoints:",
    "    - nodeName: n1",
    "      type: proxy",
    extraSpec,
    "",
  ].join("\n");
}

async function request(method: string, path: string, body?: Json, contentType = "application/json") {
  const res = await fetch(api.url + path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = parseJson(await res.text());
  if (!isObject(json)) throw new Error(`${method} ${path}: not a JSON object`);
  return { status: res.status, body: json, headers: res.headers };
}

function field(o: Json | undefined, ...path: string[]): Json | undefined {
  let cur = o;
  for (const p of path) cur = isObject(cur) ? cur[p] : undefined;
  return cur;
}

interface WatchEvent {
  type: string;
  object: JsonObject;
}

/** A raw watch stream read line by line. `next` resolves an event, "end" (clean end) or an Error. */
async function openWatch(path: string) {
  const ac = new AbortController();
  const res = await fetch(api.url + path, { signal: ac.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/json");
  if (!res.body) throw new Error("no body");
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const next = async (timeoutMs = 3000): Promise<WatchEvent | "end" | Error> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nl = buffer.indexOf("\n");
      if (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const e = parseJson(line);
        const type = str(field(e, "type"));
        const object = field(e, "object");
        if (type === undefined || !isObject(object)) return new Error(`bad watch line: ${line}`);
        return { type, object };
      }
      const left = deadline - Date.now();
      if (left <= 0) return new Error("timeout");
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), left)));
      try {
        const r = await Promise.race([reader.read(), timeout]);
        if (r === "timeout") return new Error("timeout");
        if (r.done) return "end";
        buffer += decoder.decode(r.value, { stream: true });
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      } finally {
        clearTimeout(timer);
      }
    }
  };
  return { next, close: () => ac.abort() };
}

function eventOf(e: WatchEvent | "end" | Error): WatchEvent {
  if (e === "end" || e instanceof Error) throw new Error(`expected a watch event, got ${String(e)}`);
  return e;
}

function nameOf(o: JsonObject): string | undefined {
  return str(field(o, "metadata", "name"));
}

describe("kube-api test double with kubectl 1.32", () => {
  it("kubectl version shows the server version; api-resources lists the built-ins", async () => {
    expect(await ok("version")).toContain("Server Version: v1.32.0");
    const resources = await ok("api-resources");
    expect(resources).toMatch(/^nodes\s+no\s+v1\s+false\s+Node$/m);
    expect(resources).toMatch(/^configmaps\s+cm\s+v1\s+true\s+ConfigMap$/m);
    expect(resources).not.toContain("gateways");
  });

  it("kubectl apply creates the Gateway CRD, which is established and served at once", async () => {
    expect(await ok("apply", "-f", CRD_FILE)).toBe(
      "customresourcedefinition.apiextensions.k8s.io/gateways.raven.openyurt.io created\n",
    );
    expect(await ok("get", "crd", "gateways.raven.openyurt.io")).toMatch(/^gateways\.raven\.openyurt\.io\s+\d+s$/m);
    const established = await ok(
      "get",
      "crd",
      "gateways.raven.openyurt.io",
      "-o",
      'jsonpath={.status.conditions[?(@.type=="Established")].status}',
    );
    expect(established).toBe("True");
    expect(await ok("api-resources")).toMatch(/^gateways\s+gw\s+raven\.openyurt\.io\/v1beta1\s+false\s+Gateway$/m);
    expect(await ok("api-resources", "--categories", "yurt", "-o", "name")).toBe("gateways.raven.openyurt.io\n");
    // the same file again changes nothing
    expect(await ok("apply", "-f", CRD_FILE)).toContain("unchanged");
  });

  it("kubectl apply of a Gateway round-trips; a second apply is unchanged; unknown fields are refused", async () => {
    const path = await file("gw.yaml", gatewayYaml());
    expect(await ok("apply", "-f", path)).toBe("gateway.raven.openyurt.io/gw-a created\n");
    const got: unknown = parseYaml(await ok("get", "gw", "gw-a", "-o", "yaml"));
    expect(got).toMatchObject({
      apiVersion: "raven.openyurt.io/v1beta1",
      kind: "Gateway",
      metadata: { name: "gw-a", generation: 1 },
    });
    expect(field(isObject(got) ? got : null, "spec")).toEqual({
      proxyConfig: { Replicas: 1 },
      tunnelConfig: { Replicas: 1 },
      endpoints: [{ nodeName: "n1", type: "proxy" }],
    });
    expect(await ok("get", "gw")).toMatch(/^NAME\s+AGE\ngw-a\s+\d+s\n$/);
    expect(await ok("apply", "-f", path)).toBe("gateway.raven.openyurt.io/gw-a unchanged\n");

    const bad = await file("gw-bad.yaml", gatewayYaml("  exposeTyp: PublicIP"));
    const r = await kubectl("apply", "-f", bad);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Error from server (BadRequest)");
    expect(r.stderr).toContain('strict decoding error: unknown field "spec.exposeTyp"');
    expect(await ok("get", "gw", "gw-a", "-o", "jsonpath={.spec}")).not.toContain("exposeTyp");

    // a new object with an unknown field is refused the same way (create, not patch)
    await ok("delete", "gw", "gw-a");
    const r2 = await kubectl("apply", "-f", bad);
    expect(r2.stderr).toContain('unknown field "spec.exposeTyp"');
    expect((await kubectl("get", "gw", "gw-a")).stderr).toContain('gateways.raven.openyurt.io "gw-a" not found');
    expect(await ok("apply", "-f", path)).toBe("gateway.raven.openyurt.io/gw-a created\n");
  });

  it("kubectl patch --subresource=status sets status; a plain patch cannot", async () => {
    const active = '{"status":{"activeEndpoints":[{"nodeName":"n1","type":"proxy"}]}}';
    expect(await ok("patch", "gw", "gw-a", "--subresource=status", "--type=merge", "-p", active)).toBe(
      "gateway.raven.openyurt.io/gw-a patched\n",
    );
    const status = (): Promise<string> =>
      ok("get", "gw", "gw-a", "-o", "jsonpath={.status.activeEndpoints[*].nodeName}");
    expect(await status()).toBe("n1");
    const other = '{"status":{"activeEndpoints":[{"nodeName":"n2","type":"proxy"}]}}';
    expect(await ok("patch", "gw", "gw-a", "--type=merge", "-p", other)).toBe(
      "gateway.raven.openyurt.io/gw-a patched (no change)\n",
    );
    expect(await status()).toBe("n1");
    // status writes do not bump generation
    expect(await ok("get", "gw", "gw-a", "-o", "jsonpath={.metadata.generation}")).toBe("1");
  });

  it("kubectl get -w --output-watch-events sees ADDED, then MODIFIED when another kubectl changes the object", async () => {
    // -o name prints no event types (kubectl's name printer drops them), so read -o json events instead
    const child = spawn("kubectl", kubectlArgs(["get", "gw", "-w", "--output-watch-events", "-o", "json"]));
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    const types = (): string[] =>
      out
        .split("\n")
        .map((l) => str(field(parseJson(l), "type")))
        .filter((t) => t !== undefined);
    const waitFor = async (pred: () => boolean): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    };
    try {
      await waitFor(() => types().includes("ADDED"));
      expect(types()).toEqual(["ADDED"]);
      expect(await ok("label", "gw", "gw-a", "watched=yes")).toBe("gateway.raven.openyurt.io/gw-a labeled\n");
      await waitFor(() => types().length >= 2);
      expect(types()).toEqual(["ADDED", "MODIFIED"]);
      const last = out.trim().split("\n").pop() ?? "";
      expect(field(parseJson(last), "object", "metadata", "labels")).toEqual({ watched: "yes" });
    } finally {
      child.kill("SIGTERM");
    }
  });

  it("nodes: kubectl create -f, kubectl label, label selectors", async () => {
    const node = await file("node.yaml", "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n");
    expect(await ok("create", "-f", node)).toBe("node/n1 created\n");
    expect((await kubectl("create", "-f", node)).stderr).toContain('nodes "n1" already exists');
    expect(await ok("label", "node", "n1", "apps.openyurt.io/nodepool=pool-a")).toBe("node/n1 labeled\n");
    expect(await ok("get", "nodes", "-l", "apps.openyurt.io/nodepool=pool-a", "-o", "name")).toBe("node/n1\n");
    expect(await ok("get", "nodes", "-l", "apps.openyurt.io/nodepool=other", "-o", "name")).toBe("");
    expect(await ok("get", "nodes", "-l", "apps.openyurt.io/nodepool in (x,pool-a)", "-o", "name")).toBe("node/n1\n");
    expect(await ok("get", "nodes", "-l", "!apps.openyurt.io/nodepool", "-o", "name")).toBe("");
    expect(await ok("get", "no", "--field-selector", "metadata.name=n1", "-o", "name")).toBe("node/n1\n");
  });

  it("configmaps in kube-system and an Event created with kubectl show up in kubectl get", async () => {
    const cm = await file(
      "cm.yaml",
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: raven-config\n  namespace: kube-system\ndata:\n  a: b\n",
    );
    expect(await ok("create", "-f", cm)).toBe("configmap/raven-config created\n");
    expect(await ok("get", "cm", "-n", "kube-system")).toMatch(/^NAME\s+AGE\nraven-config\s+\d+s\n$/);
    expect(await ok("get", "cm", "-n", "default", "-o", "name")).toBe("");
    expect(await ok("get", "cm", "-A", "-o", "name")).toBe("configmap/raven-config\n");
    const ev = await file(
      "ev.yaml",
      [
        "apiVersion: v1",
        "kind: Event",
        "metadata:",
        "  name: n1.gateway",
        "  namespace: default",
        "involvedObject: {kind: Node, name: n1}",
        "reason: GatewayElected",
        "message: n1 is the active proxy endpoint",
        "type: Normal",
        "",
      ].join("\n"),
    );
    expect(await ok("create", "-f", ev)).toBe("event/n1.gateway created\n");
    expect(await ok("get", "events", "-n", "default", "-o", "name")).toBe("event/n1.gateway\n");
    expect(await ok("get", "ev", "n1.gateway", "-n", "default", "-o", "jsonpath={.reason}")).toBe("GatewayElected");
    // kubectl apply on a built-in: create, then a strategic merge patch
    const applied = (v: string): string =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: kube-system\ndata:\n  v: "${v}"\n`;
    expect(await ok("apply", "-f", await file("a1.yaml", applied("1")))).toBe("configmap/applied created\n");
    expect(await ok("apply", "-f", await file("a2.yaml", applied("2")))).toBe("configmap/applied configured\n");
    expect(await ok("get", "cm", "applied", "-n", "kube-system", "-o", "jsonpath={.data.v}")).toBe("2");
    expect(await ok("delete", "-f", join(dir, "a2.yaml"))).toBe('configmap "applied" deleted\n');
    const missingNs = await kubectl("create", "-f", cm, "-n", "nope");
    expect(missingNs.stderr).toContain("the namespace from the provided object");
  });
});

describe("kube-api test double, raw protocol", () => {
  it("answers errors with Status objects: 404, 409 Conflict on a stale resourceVersion, 409 AlreadyExists", async () => {
    const missing = await request("GET", `${GW}/nope`);
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'gateways.raven.openyurt.io "nope" not found',
      reason: "NotFound",
      details: { name: "nope", group: "raven.openyurt.io", kind: "gateways" },
      code: 404,
    });
    const gw = (await request("GET", `${GW}/gw-a`)).body;
    const stale = structuredClone(gw);
    const labels = field(gw, "metadata", "labels");
    if (isObject(labels)) labels["step"] = "1";
    const put = await request("PUT", `${GW}/gw-a`, gw);
    expect(put.status).toBe(200);
    expect(Number(field(put.body, "metadata", "resourceVersion"))).toBeGreaterThan(
      Number(field(stale, "metadata", "resourceVersion")),
    );
    const conflict = await request("PUT", `${GW}/gw-a`, stale);
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({
      kind: "Status",
      status: "Failure",
      reason: "Conflict",
      code: 409,
      message:
        'Operation cannot be fulfilled on gateways.raven.openyurt.io "gw-a": the object has been modified; ' +
        "please apply your changes to the latest version and try again",
    });
    const { resourceVersion: _rv, ...noRv } = isObject(stale["metadata"]) ? stale["metadata"] : {};
    const unconditional = await request("PUT", `${GW}/gw-a`, { ...stale, metadata: noRv });
    expect(unconditional.body).toMatchObject({ reason: "Invalid", code: 422 });
    expect(str(unconditional.body["message"])).toContain("metadata.resourceVersion: Invalid value: 0x0");
    const dup = await request("POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "n1" } });
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ reason: "AlreadyExists", message: 'nodes "n1" already exists' });
    const unknownPath = await request("GET", "/apis/nope.example.com/v1/things");
    expect(unknownPath.body).toMatchObject({ kind: "Status", code: 404, reason: "NotFound" });
  });

  it("prunes unknown fields without Strict (with a warning), honours dryRun=All, 415 for strategic patch on CRs", async () => {
    const body = {
      apiVersion: "raven.openyurt.io/v1beta1",
      kind: "Gateway",
      metadata: { name: "gw-p" },
      spec: { foo: 1, exposeType: "" },
    };
    const dry = await request("POST", `${GW}?dryRun=All`, body);
    expect(dry.status).toBe(201);
    expect((await request("GET", `${GW}/gw-p`)).status).toBe(404);
    const created = await request("POST", GW, body);
    expect(created.status).toBe(201);
    expect(field(created.body, "spec")).toEqual({ exposeType: "" });
    expect(created.headers.get("warning")).toContain('unknown field \\"spec.foo\\"');
    const smp = await request("PATCH", `${GW}/gw-p`, { spec: {} }, "application/strategic-merge-patch+json");
    expect(smp.status).toBe(415);
    expect(smp.body).toMatchObject({ reason: "UnsupportedMediaType", code: 415 });
    expect((await request("DELETE", `${GW}/gw-p`)).status).toBe(200);
  });

  it("applies JSON patches (RFC 6902) and refuses a failed test with 422", async () => {
    const path = "/api/v1/namespaces/kube-system/configmaps/raven-config";
    const patched = await request(
      "PATCH",
      path,
      [
        { op: "test", path: "/data/a", value: "b" },
        { op: "add", path: "/data/c", value: "d" },
        { op: "replace", path: "/data/a", value: "z" },
        { op: "copy", from: "/data/c", path: "/data/e" },
        { op: "move", from: "/data/e", path: "/data/f" },
        { op: "remove", path: "/data/c" },
      ],
      "application/json-patch+json",
    );
    expect(patched.status).toBe(200);
    expect(field(patched.body, "data")).toEqual({ a: "z", f: "d" });
    const failed = await request(
      "PATCH",
      path,
      [{ op: "test", path: "/data/a", value: "b" }],
      "application/json-patch+json",
    );
    expect(failed.status).toBe(422);
    expect(failed.body).toMatchObject({ kind: "Status", code: 422 });
  });

  it("watch from a resourceVersion replays only later events, then goes on live", async () => {
    const list = await request("GET", "/api/v1/namespaces/default/configmaps");
    expect(list.body).toMatchObject({ kind: "ConfigMapList", apiVersion: "v1", items: [] });
    const rv = str(field(list.body, "metadata", "resourceVersion"));
    const cm = (name: string): JsonObject => ({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name, labels: { w: "1" } },
    });
    await request("POST", "/api/v1/namespaces/default/configmaps", cm("w1"));
    await request("POST", "/api/v1/namespaces/kube-system/configmaps", cm("other-ns"));
    await request("POST", "/api/v1/namespaces/default/configmaps", cm("w2"));
    const w = await openWatch(
      `/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${rv ?? ""}&labelSelector=w%3D1`,
    );
    try {
      const first = eventOf(await w.next());
      expect([first.type, nameOf(first.object), first.object["kind"]]).toEqual(["ADDED", "w1", "ConfigMap"]);
      const second = eventOf(await w.next());
      expect([second.type, nameOf(second.object)]).toEqual(["ADDED", "w2"]);
      await request("DELETE", "/api/v1/namespaces/default/configmaps/w1");
      const third = eventOf(await w.next());
      expect([third.type, nameOf(third.object)]).toEqual(["DELETED", "w1"]);
    } finally {
      w.close();
    }
    // without a resourceVersion: the current objects as ADDED
    const fresh = await openWatch("/api/v1/namespaces/default/configmaps?watch=1");
    try {
      const e = eventOf(await fresh.next());
      expect([e.type, nameOf(e.object)]).toEqual(["ADDED", "w2"]);
    } finally {
      fresh.close();
    }
  });

  it("a resourceVersion older than the history gets an ERROR event with a 410 Expired Status", async () => {
    const old = api.store.resourceVersion;
    await request("POST", "/api/v1/namespaces/default/configmaps", { metadata: { name: "after-old" } });
    api.store.compact();
    const w = await openWatch(`/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${old}`);
    const e = eventOf(await w.next());
    expect(e.type).toBe("ERROR");
    expect(e.object).toMatchObject({ kind: "Status", status: "Failure", reason: "Expired", code: 410 });
    expect(str(e.object["message"])).toMatch(new RegExp(`^too old resource version: ${old} \\(\\d+\\)$`));
    expect(await w.next()).toBe("end");
  });

  it("sends BOOKMARKs on a quiet watch when allowed, and ends cleanly at timeoutSeconds", async () => {
    const w = await openWatch(
      `/api/v1/nodes?watch=true&resourceVersion=${api.store.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=1`,
    );
    const e = eventOf(await w.next());
    expect(e.type).toBe("BOOKMARK");
    expect(e.object).toEqual({
      kind: "Node",
      apiVersion: "v1",
      metadata: { resourceVersion: api.store.resourceVersion },
    });
    let last: WatchEvent | "end" | Error;
    do last = await w.next();
    while (last !== "end" && !(last instanceof Error));
    expect(last).toBe("end");
  });

  it("dropWatches() ends open watches abruptly; restart() serves the same objects on the same port", async () => {
    const w = await openWatch(`${GW}?watch=true`);
    expect(eventOf(await w.next()).type).toBe("ADDED");
    api.dropWatches();
    const after = await w.next();
    expect(after).toBeInstanceOf(Error);
    expect(String(after)).not.toContain("timeout");

    const before = (await request("GET", `${GW}/gw-a`)).body;
    const port = api.port;
    await api.restart();
    expect(api.port).toBe(port);
    const again = await request("GET", `${GW}/gw-a`);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(before);
    expect(await ok("get", "gw", "-o", "name")).toBe("gateway.raven.openyurt.io/gw-a\n");
  });
});
