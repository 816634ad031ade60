// deploy/: the manifests apply with the real kubectl (to the API double, which keeps every kind they use);
// the nats-server configs they carry pass nats-server's own check with the environment the pods give them;
// and every Raven container is started with flags its entrypoint has.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../services/fleet/build";
import { loadManifests } from "../helpers/rbac";
import { startKubeApi, writeKubeconfig, type KubeApi } from "../kube-api/server";

const DEPLOY = join(REPO_ROOT, "deploy");
let dir: string;
let api: KubeApi;
let kubeconfig: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "deploy-test-"));
  api = await startKubeApi();
  kubeconfig = await writeKubeconfig(dir, api.url);
});

afterAll(async () => {
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: 30_000, encoding: "utf8", cwd: REPO_ROOT, env: { ...process.env, ...env } },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

type Container = { name: string; command?: string[]; args?: string[]; env?: { name: string; value?: string }[] };
type Workload = { kind: string; metadata: { name: string }; spec: { template: { spec: { containers: Container[] } } } };

const workloads = () =>
  loadManifests(DEPLOY).filter((o) =>
    ["Deployment", "DaemonSet", "StatefulSet"].includes(o.kind),
  ) as unknown as Workload[];

describe("deploy/", () => {
  it("applies with kubectl: the CRD, RBAC, hub, coordinator, agents and raven-cfg", async () => {
    const r = await run("kubectl", ["--kubeconfig", kubeconfig, "apply", "-f", DEPLOY]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    for (const line of [
      "customresourcedefinition.apiextensions.k8s.io/gateways.raven.openyurt.io created",
      "deployment.apps/raven-coordinator created",
      "daemonset.apps/raven-agent-cloud created",
      "daemonset.apps/raven-agent-edge created",
      "statefulset.apps/raven-hub created",
      "clusterrole.rbac.authorization.k8s.io/raven-coordinator created",
      "configmap/raven-cfg created",
    ])
      expect(r.stdout).toContain(line);
    const again = await run("kubectl", ["--kubeconfig", kubeconfig, "apply", "-f", DEPLOY]);
    expect(again.code).toBe(0);
    expect(again.stdout).not.toMatch(/created|configured/);
  });

  it("runs two coordinator replicas and gives agents the host network and NET_ADMIN, nothing broader", () => {
    const all = workloads();
    const coordinator = all.find((w) => w.metadata.name === "raven-coordinator") as unknown as {
      spec: { replicas: number };
    };
    expect(coordinator.spec.replicas).toBe(2);
    for (const ds of all.filter((w) => w.kind === "DaemonSet")) {
      const spec = ds.spec.template.spec as unknown as {
        hostNetwork: boolean;
        hostPID?: boolean;
        containers: { securityContext: { privileged?: boolean; capabilities: { add?: string[]; drop: string[] } } }[];
      };
      expect(spec.hostNetwork).toBe(true);
      expect(spec.hostPID).toBeUndefined();
      for (const c of spec.containers) {
        expect(c.securityContext.privileged).toBeUndefined();
        expect(c.securityContext.capabilities.drop).toEqual(["ALL"]);
        for (const cap of c.securityContext.capabilities.add ?? [])
          expect(["NET_ADMIN", "NET_BIND_SERVICE"]).toContain(cap);
      }
    }
  });

  it("carries nats-server configs that nats-server accepts, with the pods' environment", async () => {
    const maps = loadManifests(DEPLOY).filter((o) => o.kind === "ConfigMap") as unknown as {
      metadata: { name: string };
      data: Record<string, string>;
    }[];
    const hub = maps.find((m) => m.metadata.name === "raven-hub")!.data["hub.conf"]!;
    const leaf = maps.find((m) => m.metadata.name === "raven-agent")!.data["leaf.conf"]!;
    await writeFile(join(dir, "hub.conf"), hub);
    await writeFile(join(dir, "leaf.conf"), leaf);
    const hubCheck = await run("nats-server", ["-t", "-c", join(dir, "hub.conf")]);
    expect(hubCheck.stderr + hubCheck.stdout).toMatch(/is valid/);
    const env = { RAVEN_LEAF_NAME: "raven-leaf-node-1", RAVEN_HUB_LEAF_URL: "nats-leaf://127.0.0.1:7422" };
    const leafCheck = await run("nats-server", ["-t", "-c", join(dir, "leaf.conf")], env);
    expect(leafCheck.stderr + leafCheck.stdout).toMatch(/is valid/);
    expect(leafCheck.code).toBe(0);
  });

  it("starts every Raven container with flags its entrypoint has", async () => {
    const helps = new Map<string, string>();
    let checked = 0;
    for (const w of workloads())
      for (const c of w.spec.template.spec.containers) {
        const bundle = /\/app\/\.raven\/build\/([a-z-]+)\.mjs$/.exec(c.command?.[1] ?? "")?.[1];
        if (c.command?.[0] !== "node" || !bundle) continue;
        if (!helps.has(bundle)) {
          const r = await run(process.execPath, ["--import", "tsx", `services/${bundle}/main.ts`, "--help"]);
          expect(r.code).toBe(0);
          helps.set(bundle, r.stdout);
        }
        for (const arg of c.args ?? []) {
          const flag = /^(--[a-z-]+)/.exec(arg)?.[1];
          expect(flag, `${w.metadata.name}/${c.name}: ${arg} is not a flag`).toBeDefined();
          expect(helps.get(bundle), `${w.metadata.name}/${c.name}: ${bundle} has no ${flag}`).toMatch(
            new RegExp(`${flag}(?![\\w-])`),
          );
          checked++;
        }
      }
    expect(checked).toBeGreaterThan(20);
  });
});
