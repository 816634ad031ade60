// Kubernetes as the source of truth, end to end: a real fleet (nats-server hub and leaves, coordinator, node
// and gateway actor processes) whose coordinators run with --kubeconfig against the API double, read and
// written with the real kubectl. The Gateway status and Events follow an election and a failover; the
// edge-tunnel-nodes hosts map lists every Node; a node registers only as its Node's labels allow; an invalid
// Gateway gets a Warning Event and nothing else changes; KV follows the objects; drift and an API server
// restart are repaired. The coordinator and the agents each use a kubeconfig of their own, and every request
// they make is checked against deploy/rbac.yaml, which must grant nothing they did not use.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyGateway, listGateways } from "../../shared/gateway-store";
import { parseGatewayManifest } from "../../shared/gateway-manifest";
import { connectOnce, openBuckets } from "../../shared/nats";
import { decode, encode, subjects, type NodeRegister } from "../../shared/protocol";
import { startRavenCluster, type RavenCluster } from "../kube-api/cluster";
import { writeKubeconfig, type ApiRequest } from "../kube-api/server";
import { allowedBy, attributesOf, grants, loadManifests } from "../helpers/rbac";
import { REPO_ROOT } from "../../services/fleet/build";
import { eventually, fleetStatus, sleep, smallTopology, startTestFleet, type TestFleet } from "../helpers/fleet";

let dir: string;
let cluster: RavenCluster;
let t: TestFleet;
const agents: ChildProcess[] = [];
const requests: ApiRequest[] = [];
let coordinatorConfig: string;
let agentConfig: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kube-sync-"));
  cluster = await startRavenCluster(dir, { bookmarkIntervalMs: 500, onRequest: (r) => requests.push(r) });
  coordinatorConfig = await writeKubeconfig(dir, cluster.api.url, "raven-coordinator");
  agentConfig = await writeKubeconfig(dir, cluster.api.url, "raven-agent");
  // Proxy on loopback: the cloud's proxy endpoints get an address (127.0.0.1), the hosts map's edge address.
  t = await startTestFleet(smallTopology(true), {
    proxy: true,
    kubeconfig: coordinatorConfig,
    kubeAdminConfig: cluster.kubeconfig,
  });
}, 90_000);

afterAll(async () => {
  for (const a of agents) a.kill("SIGKILL");
  await t?.stop();
  await cluster?.api.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function kubectl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "kubectl",
      ["--kubeconfig", cluster.kubeconfig, ...args],
      { timeout: 20_000, encoding: "utf8" },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  expect(r.code, `kubectl ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

type GatewayObject = {
  metadata: { name: string; resourceVersion: string };
  status?: {
    nodes?: { nodeName: string; privateIP: string; subnets: string[] }[];
    activeEndpoints?: { nodeName: string; type: string; config?: Record<string, string> }[];
  };
};

const getGateway = async (name: string) => JSON.parse(await ok("get", "gw", name, "-o", "json")) as GatewayObject;

async function get(path: string): Promise<unknown> {
  const res = await fetch(cluster.api.url + path);
  return res.status === 200 ? res.json() : null;
}

type EventObject = { reason: string; type: string; message: string; involvedObject: { kind: string; name: string } };
async function eventsOf(gateway: string): Promise<EventObject[]> {
  const list = (await get("/api/v1/namespaces/default/events")) as { items: EventObject[] };
  return list.items.filter((e) => e.involvedObject.kind === "Gateway" && e.involvedObject.name === gateway);
}

async function hostsMap(): Promise<string | null> {
  const cm = (await get("/api/v1/namespaces/kube-system/configmaps/edge-tunnel-nodes")) as {
    data?: Record<string, string>;
  } | null;
  return cm?.data?.["tunnel-nodes"] ?? null;
}

const activeNodes = (gw: GatewayObject, type = "proxy") =>
  (gw.status?.activeEndpoints ?? []).filter((e) => e.type === type).map((e) => e.nodeName);

async function register(node: string, domain: string, labels: Record<string, string>) {
  const nc = await connectOnce(t.fleet.hubUrl, "kube-sync-test", 5_000);
  try {
    const body: NodeRegister = { node, domain, labels, internalIP: "127.0.2.9", startedAt: Date.now() };
    const reply = decode(
      (await nc.request(subjects.nodeRegister(domain, node), encode("node.register", body), { timeout: 2_000 })).data,
    );
    return reply;
  } finally {
    await nc.close();
  }
}

/** An actor process from source, its output kept for the test to read. */
function startAgent(entry: string, args: string[]): { proc: ChildProcess; output: () => string } {
  let out = "";
  const proc = spawn(process.execPath, ["--import", "tsx", entry, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr!.on("data", (b: Buffer) => (out += b.toString()));
  agents.push(proc);
  return { proc, output: () => out };
}

async function api(method: string, path: string, body: unknown, contentType = "application/json"): Promise<void> {
  const res = await fetch(cluster.api.url + path, {
    method,
    headers: { "Content-Type": contentType },
    body: JSON.stringify(body),
  });
  expect(res.status, `${method} ${path}: ${await res.clone().text()}`).toBeLessThan(300);
}

describe("Kubernetes as the source of truth", () => {
  it("writes each Gateway's status: its Nodes and the active endpoints, with the mode flags", async () => {
    const gw = await eventually("gw-a's status to name its active endpoints", 15_000, async () => {
      const o = await getGateway("gw-a");
      return activeNodes(o).length === 1 && activeNodes(o, "tunnel").length === 1 ? o : undefined;
    });
    expect(gw.status!.nodes).toEqual([
      { nodeName: "a-gw-1", privateIP: "127.0.2.1", subnets: [] },
      { nodeName: "a-gw-2", privateIP: "127.0.2.2", subnets: [] },
      { nodeName: "a-node-1", privateIP: "127.0.2.3", subnets: [] },
    ]);
    expect(gw.status!.activeEndpoints![0]!.config).toEqual({ "enable-l7-proxy": "true", "enable-l3-tunnel": "true" });
    // The same active as the election's own view.
    const st = await fleetStatus(t.fleet);
    const domain = st!.domains.find((d) => d.gateway === "gw-a")!;
    expect(activeNodes(gw)).toEqual(domain.active.filter((a) => a.type === "proxy").map((a) => a.nodeName));
    const yaml = await ok("get", "gw", "gw-a", "-o", "yaml");
    expect(yaml).toMatch(/activeEndpoints:/);
    const events = await eventsOf("gw-a");
    expect(events.some((e) => e.reason === "ActiveEndpointElected" && e.message.includes(activeNodes(gw)[0]!))).toBe(
      true,
    );
  });

  it("writes the edge-tunnel-nodes hosts map: edge nodes to the proxy, cloud nodes to their own address", async () => {
    const text = await eventually("the hosts map", 10_000, async () => (await hostsMap()) ?? undefined);
    expect(text.split("\n")).toEqual(
      [
        "127.0.0.1\ta-gw-1",
        "127.0.0.1\ta-gw-2",
        "127.0.0.1\ta-node-1",
        "127.0.0.1\tsolo-1",
        "127.0.1.1\tc-gw-1",
        "127.0.1.2\tc-gw-2",
      ].sort(),
    );
  });

  it("follows a failover: new active in status, Events for the lost and the elected endpoint", async () => {
    const before = await getGateway("gw-a");
    const victim = activeNodes(before)[0]!;
    t.fleet.kill(`gateway-${victim}`);
    const after = await eventually("gw-a's status to follow the failover", 15_000, async () => {
      const o = await getGateway("gw-a");
      const now = activeNodes(o);
      return now.length === 1 && now[0] !== victim ? o : undefined;
    });
    const successor = activeNodes(after)[0]!;
    await eventually("Events for the failover", 5_000, async () => {
      const events = await eventsOf("gw-a");
      return (
        events.some((e) => e.reason === "ActiveEndpointLost" && e.message.includes(`proxy/${victim}`)) &&
        events.some((e) => e.reason === "ActiveEndpointElected" && e.message.includes(`proxy/${successor}`))
      );
    });
  });

  it("registers a node only as its Node's labels place it, and follows a relabel", async () => {
    // No Node object: refused.
    const none = await register("a-node-9", "edge-a", { "apps.openyurt.io/nodepool": "edge-a" });
    expect(none.type).toBe("error");
    expect(JSON.stringify(none.body)).toMatch(/not a Node in Kubernetes/);
    // A Node in no pool: its agent in edge-a is told where Kubernetes places it.
    await writeFile(
      join(dir, "node.yaml"),
      ["apiVersion: v1", "kind: Node", "metadata:", "  name: a-node-9", "spec:", "  podCIDR: 10.244.9.0/24", ""].join(
        "\n",
      ),
    );
    await ok("apply", "-f", join(dir, "node.yaml"));
    const unpooled = await eventually("the informer to see a-node-9", 5_000, async () => {
      const r = await register("a-node-9", "edge-a", { "apps.openyurt.io/nodepool": "edge-a" });
      return JSON.stringify(r.body).includes("not a Node") ? undefined : r;
    });
    expect(JSON.stringify(unpooled.body)).toMatch(/labels in Kubernetes place it in a-node-9/);
    // Labelled into the pool and the Gateway: accepted, and served by gw-a.
    await ok("label", "node", "a-node-9", "apps.openyurt.io/nodepool=edge-a", "raven.openyurt.io/gateway=gw-a");
    const placed = await eventually("a-node-9 to register into gw-a", 5_000, async () => {
      const r = await register("a-node-9", "edge-a", {});
      return r.type === "node.registered" ? r : undefined;
    });
    expect(placed.body).toMatchObject({ node: "a-node-9", gateway: "gw-a", solo: false });
    await eventually("a-node-9 in gw-a's status.nodes", 10_000, async () =>
      (await getGateway("gw-a")).status?.nodes?.some(
        (n) => n.nodeName === "a-node-9" && n.subnets[0] === "10.244.9.0/24",
      ),
    );
    await eventually("a-node-9 in the hosts map", 10_000, async () =>
      (await hostsMap())?.includes("127.0.0.1\ta-node-9"),
    );
    // Relabelled out of the Gateway: the registered node's record follows (it becomes its own gateway).
    await ok("label", "node", "a-node-9", "raven.openyurt.io/gateway-");
    await eventually("a-node-9 to leave gw-a in the election's view", 10_000, async () => {
      const st = await fleetStatus(t.fleet);
      const gwA = st?.domains.find((d) => d.gateway === "gw-a");
      return gwA && !gwA.nodes.some((n) => n.node === "a-node-9") && st!.domains.some((d) => d.gateway === "a-node-9");
    });
    await eventually("a-node-9 to leave gw-a's status.nodes", 10_000, async () =>
      (await getGateway("gw-a")).status?.nodes?.every((n) => n.nodeName !== "a-node-9"),
    );
  });

  it("refuses an invalid Gateway with a Warning Event naming the field, and every other Gateway keeps working", async () => {
    const before = await fleetStatus(t.fleet);
    const termOf = (st: typeof before, gw: string) => st!.domains.find((d) => d.gateway === gw)!.term;
    await writeFile(
      join(dir, "bad.yaml"),
      [
        "apiVersion: raven.openyurt.io/v1beta1",
        "kind: Gateway",
        "metadata:",
        "  name: gw-bad",
        "spec:",
        "  endpoints:",
        "    - {nodeName: x-1, type: proxy, underNAT: true}",
        "    - {nodeName: x-2, type: proxy, underNAT: false}",
        "",
      ].join("\n"),
    );
    await ok("apply", "-f", join(dir, "bad.yaml"));
    const warning = await eventually("a Warning Event on gw-bad", 10_000, async () =>
      (await eventsOf("gw-bad")).find((e) => e.reason === "InvalidGateway"),
    );
    expect(warning.type).toBe("Warning");
    expect(warning.message).toMatch(/spec\.endpoints\[1\]\.underNAT/);
    const nc = await connectOnce(t.fleet.hubUrl, "kube-sync-test", 5_000);
    try {
      const names = (await listGateways((await openBuckets(nc)).gateways)).map((g) => g.metadata.name);
      expect(names).not.toContain("gw-bad");
    } finally {
      await nc.close();
    }
    const after = await fleetStatus(t.fleet);
    expect(termOf(after, "gw-c")).toBe(termOf(before, "gw-c"));
    expect(termOf(after, "gw-a")).toBe(termOf(before, "gw-a"));
    await ok("delete", "gw", "gw-bad");
  });

  it("keeps KV in line with the objects: a record applied beside Kubernetes is removed", async () => {
    const nc = await connectOnce(t.fleet.hubUrl, "kube-sync-test", 5_000);
    try {
      const kv = (await openBuckets(nc)).gateways;
      await applyGateway(
        kv,
        parseGatewayManifest({
          apiVersion: "raven.openyurt.io/v1beta1",
          kind: "Gateway",
          metadata: { name: "gw-rogue" },
        }),
      );
      await eventually("gw-rogue's record to be deleted", 10_000, async () =>
        (await listGateways(kv)).every((g) => g.metadata.name !== "gw-rogue"),
      );
    } finally {
      await nc.close();
    }
  });

  it("repairs drift: an edited status and a deleted hosts map are written again", async () => {
    await ok(
      "patch",
      "gw",
      "gw-c",
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { activeEndpoints: [], nodes: [] } }),
    );
    await ok("delete", "configmap", "-n", "kube-system", "edge-tunnel-nodes");
    await eventually(
      "gw-c's status to be written again",
      10_000,
      async () => activeNodes(await getGateway("gw-c")).length === 1,
    );
    await eventually("the hosts map to be written again", 10_000, async () => (await hostsMap()) ?? undefined);
  });

  it("carries on across an API server restart mid-watch", async () => {
    await cluster.api.restart();
    await sleep(500);
    const before = await getGateway("gw-c");
    const victim = activeNodes(before)[0]!;
    t.fleet.kill(`gateway-${victim}`);
    await eventually("gw-c's status to follow the failover after the restart", 20_000, async () => {
      const now = activeNodes(await getGateway("gw-c"));
      return now.length === 1 && now[0] !== victim;
    });
  });

  it("starts agents from their Node: facts from Kubernetes, a gateway candidate once a Gateway lists it", async () => {
    await api("POST", "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: "a-gw-3",
        labels: { "apps.openyurt.io/nodepool": "edge-a", "raven.openyurt.io/gateway": "gw-a" },
      },
      spec: { podCIDR: "10.244.7.0/24" },
    });
    const status = { addresses: [{ type: "InternalIP", address: "127.0.2.7" }], conditions: [] };
    await api("PATCH", "/api/v1/nodes/a-gw-3/status", { status }, "application/merge-patch+json");
    const leaf = t.fleet.natsUrlFor("edge-a");
    const common = ["--node", "a-gw-3", "--from-kube", "--kubeconfig", agentConfig, "--nats", leaf];
    startAgent("services/node-actor/main.ts", common);
    await eventually("a-gw-3 registered with its Node's facts", 20_000, async () => {
      const st = await fleetStatus(t.fleet);
      const n = st?.domains.find((d) => d.gateway === "gw-a")?.nodes.find((x) => x.node === "a-gw-3");
      return n?.ready && n.internalIP === "127.0.2.7";
    });
    const gateway = startAgent("services/gateway-actor/main.ts", common);
    await eventually("the gateway actor to wait: no Gateway lists a-gw-3", 20_000, () =>
      gateway.output().includes("waiting until one does"),
    );
    expect(gateway.proc.exitCode).toBeNull();
    await ok(
      "patch",
      "gw",
      "gw-a",
      "--type=json",
      "-p",
      JSON.stringify([{ op: "add", path: "/spec/endpoints/-", value: { nodeName: "a-gw-3", type: "proxy" } }]),
    );
    await eventually("a-gw-3 to be a healthy candidate of gw-a", 20_000, async () => {
      const st = await fleetStatus(t.fleet);
      return st?.domains.find((d) => d.gateway === "gw-a")?.candidates.find((c) => c.node === "a-gw-3")?.healthy;
    });
  });

  it("asks only what deploy/rbac.yaml allows, and uses every grant it has", () => {
    const manifests = loadManifests(join(REPO_ROOT, "deploy"));
    for (const [token, sa] of [
      ["raven-coordinator", "kube-system/raven-coordinator"],
      ["raven-agent", "kube-system/raven-agent"],
    ] as const) {
      const asked = requests.filter((r) => r.token === token).flatMap((r) => attributesOf(r) ?? []);
      expect(asked.length, `${token} made no request`).toBeGreaterThan(0);
      const refused = asked.filter((a) => !allowedBy(manifests, sa, a));
      expect(refused, `${sa}: requests deploy/rbac.yaml would refuse`).toEqual([]);
      const unused = grants(manifests, sa)
        .filter((g) => !asked.some(g.covers))
        .map((g) => g.grant);
      expect(unused, `${sa}: grants never used`).toEqual([]);
    }
  });
});
