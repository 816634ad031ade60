// The API double's node routes with the real kubectl and two kubelet stand-ins on loopback (no Raven, no root:
// the dialer maps each node to its stand-in's port): logs (tail, follow, a follow that breaks), exec over
// WebSocket and over SPDY/3.1 (stdin, no stdin, a failing command), nodes/proxy and kubectl top node.
// Through Raven, in namespaces: proxy-netns.test.ts.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTargetServer, type TargetServer } from "../../lib/demo-kubelet";
import { ensurePki, loadPki } from "../../shared/pki";
import { eventually } from "../helpers/fleet";
import { startKubeApi, writeKubeconfig, type KubeApi } from "../kube-api/server";

let dir: string;
let api: KubeApi;
let kubeconfig: string;
const kubelets = new Map<string, TargetServer>();
/** Every connection the double dialled, by node: the test breaks them as a failing path would. */
const dialled = new Map<string, Set<Socket>>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kube-node-proxy-"));
  await ensurePki(join(dir, "pki"));
  const { kubelet } = loadPki(join(dir, "pki"));
  for (const node of ["n1", "n2"])
    kubelets.set(
      node,
      await startTargetServer({ node, host: "127.0.0.1", httpPorts: [], httpsPorts: [0], tls: kubelet }),
    );
  api = await startKubeApi({
    nodeDialer: (node) =>
      new Promise((resolve, reject) => {
        const k = kubelets.get(node);
        if (!k) return reject(new Error(`no route to ${node}`));
        const s = connect(k.httpsPorts[0]!, "127.0.0.1", () => resolve(s));
        s.once("error", reject);
        const set = dialled.get(node) ?? new Set<Socket>();
        set.add(s);
        s.once("close", () => set.delete(s));
        dialled.set(node, set);
      }),
  });
  kubeconfig = await writeKubeconfig(dir, api.url);
  for (const node of ["n1", "n2", "n3"]) {
    api.store.create(
      { group: "", resource: "nodes" },
      {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: node },
        status: { allocatable: { cpu: "2", memory: "4Gi" }, capacity: { cpu: "2", memory: "4Gi" } },
      },
    );
    api.store.create(
      { group: "", resource: "pods" },
      {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `pod-${node}`, namespace: "default" },
        spec: { nodeName: node, containers: [{ name: "app", image: "demo" }] },
        status: { phase: "Running" },
      },
    );
  }
}, 30_000);

afterAll(async () => {
  await api?.close();
  for (const k of kubelets.values()) await k.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function kubectl(
  args: string[],
  opts: { input?: string; env?: Record<string, string> } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn("kubectl", ["--kubeconfig", kubeconfig, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ...opts.env },
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), 20_000);
    p.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(opts.input ?? "");
  });
}

const SPDY = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false" };

describe("the API double's node routes, with kubectl", () => {
  it("shows each node's own log, and names the node it cannot reach", async () => {
    for (const node of ["n1", "n2"]) {
      const r = await kubectl(["logs", `pod-${node}`, "--tail=2"]);
      expect(r.stdout).toBe(`${node} line 1\n${node} line 2\n`);
    }
    const unreachable = await kubectl(["logs", "pod-n3"]);
    expect(unreachable.code).not.toBe(0);
    expect(unreachable.stderr).toMatch(/n3/);
  });

  for (const [protocol, env] of [
    ["WebSocket", {}],
    ["SPDY/3.1", SPDY],
  ] as const) {
    it(`runs exec over ${protocol}: output, stdin, no stdin, and a failing command's exit code`, async () => {
      expect((await kubectl(["exec", "pod-n2", "--", "hostname"], { env })).stdout).toBe("n2\n");
      expect((await kubectl(["exec", "pod-n1", "--", "echo", "a", "b"], { env })).stdout).toBe("a b\n");
      const cat = await kubectl(["exec", "-i", "pod-n1", "--", "cat"], { env, input: "piped in\n" });
      expect(cat.stdout).toBe("piped in\n");
      const noStdin = await kubectl(["exec", "pod-n1", "--", "cat"], { env });
      expect(noStdin.code).toBe(0);
      expect(noStdin.stdout).toBe("");
      const missing = await kubectl(["exec", "pod-n1", "--", "nope"], { env });
      expect(missing.code).toBe(127);
      expect(missing.stderr).toContain("nope: command not found");
    });
  }

  it("proxies to a node (nodes/proxy) and answers kubectl top node from /metrics/resource", async () => {
    const raw = await kubectl(["get", "--raw", "/api/v1/nodes/n2/proxy/name"]);
    expect(raw.stdout).toBe("n2\n");
    const top = await kubectl(["top", "node"]);
    expect(top.code).toBe(0);
    for (const node of ["n1", "n2"])
      expect(top.stdout).toMatch(new RegExp(`^${node}\\s+\\d+m\\s+\\d+%\\s+\\d+Mi`, "m"));
    // Unreachable: no metrics for it (left out, as metrics-server leaves it out), so kubectl shows it unknown.
    expect(top.stdout).toMatch(/^n3\s+<unknown>/m);
  });

  it("cuts a followed log off when the kubelet's connection breaks, so kubectl reports it", async () => {
    let out = "";
    let err = "";
    const follow = spawn("kubectl", ["--kubeconfig", kubeconfig, "logs", "-f", "pod-n1"]);
    follow.stdout.on("data", (b: Buffer) => (out += b.toString()));
    follow.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => follow.on("exit", resolve));
    try {
      await eventually("followed lines", 10_000, () => out.split("\n").length > 3);
      for (const s of dialled.get("n1") ?? []) s.destroy(); // the path to n1 breaks mid-stream
      expect(await exited).not.toBe(0);
      expect(err).toMatch(/unexpected EOF|error/i);
    } finally {
      follow.kill("SIGKILL");
    }
  });
});
