// Proxy mode end to end in network namespaces (root): the demo fleet with every domain in its own namespace,
// factory-a, shop-b and the solo kiosk-1 reusing the same InternalIPs. Asked by name through the cloud
// gateway, every node answers with its own name; the solo node is reached through its own gateway role. The
// real kubectl, against the Kubernetes API double that reaches kubelets through Raven's proxy as kube-apiserver
// does with an egress selector, shows each node's own logs and runs exec and top on the right node.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultTopology, eventually, fleetStatus, sleep, startTestFleet, type TestFleet } from "../helpers/fleet";
import { proxyDialer } from "../kube-api/node-proxy";
import { startKubeApi, writeKubeconfig, type KubeApi } from "../kube-api/server";
import { curl } from "../helpers/proxy";
import { activeDoor, proxySuite } from "./proxy-suite";

const isRoot = process.getuid?.() === 0;
const hasIp = (() => {
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let t: TestFleet;
const topology = defaultTopology();

describe.skipIf(!isRoot || !hasIp)(
  `proxy mode in network namespaces${isRoot && hasIp ? "" : " (skipped: needs root and iproute2)"}`,
  () => {
    beforeAll(async () => {
      t = await startTestFleet(topology, { netns: true });
    }, 90_000);

    afterAll(async () => {
      await t?.stop();
    });

    it("runs every domain in its own namespace, with InternalIPs that collide across domains", () => {
      const byIp = new Map<string, string[]>();
      for (const n of topology.nodes) byIp.set(n.internalIP, [...(byIp.get(n.internalIP) ?? []), n.name]);
      expect(byIp.get("192.168.1.11")).toEqual(["factory-a-gw-1", "shop-b-gw-1", "kiosk-1"]);
      const namespaces = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
      for (const d of t.fleet.allDomains()) expect(namespaces).toContain(t.fleet.namespaceOf(d)!);
    });

    it("answers each of the nodes sharing 192.168.1.11 with its own name, by CONNECT and as a forward proxy", async () => {
      const door = await activeDoor(t, "gw-cloud");
      for (const node of ["factory-a-gw-1", "shop-b-gw-1", "kiosk-1"]) {
        const viaConnect = await curl([
          "-p",
          "-x",
          `http://${door.host}:${door.frontPort}`,
          `http://${node}:10255/name`,
        ]);
        expect(viaConnect.body.trim()).toBe(node);
        const viaForward = await curl(["-x", `http://${door.host}:${door.frontPort}`, `http://${node}:9100/metrics`]);
        expect(viaForward.body).toContain(`node="${node}"`);
      }
    });

    proxySuite({ t: () => t, topology, cloudGateway: "gw-cloud", edgeGateway: "gw-shop-b", edgeNode: "shop-b-node-1" });

    describe("kubectl logs, exec and top through Raven (the API double dials kubelets via the proxy)", () => {
      let api: KubeApi;
      let dir: string;
      let kubeconfig: string;
      const sharing = ["factory-a-gw-1", "shop-b-gw-1", "kiosk-1"]; // all at 192.168.1.11
      const kubectl = (...args: string[]) => run("kubectl", ["--kubeconfig", kubeconfig, ...args]);

      beforeAll(async () => {
        dir = mkdtempSync(join(tmpdir(), "kubectl-raven-"));
        const doors = () => [...t.fleet.proxyPlan!.cloud.values()].map((l) => ({ host: l.host, port: l.frontPort }));
        api = await startKubeApi({ nodeDialer: proxyDialer(doors) });
        kubeconfig = await writeKubeconfig(dir, api.url);
        for (const node of [...sharing, "factory-a-node-1"]) {
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
      });

      afterAll(async () => {
        await api?.close();
        if (dir) rmSync(dir, { recursive: true, force: true });
      });

      it("shows each node's own log lines and runs exec on the right node, for nodes sharing an InternalIP", async () => {
        for (const node of sharing) {
          const logs = await kubectl("logs", `pod-${node}`, "--tail=2");
          expect(logs.stderr).toBe("");
          expect(logs.stdout).toBe(`${node} line 1\n${node} line 2\n`);
          const exec = await kubectl("exec", `pod-${node}`, "--", "hostname");
          expect(exec.stderr).toBe("");
          expect(exec.stdout).toBe(`${node}\n`);
        }
        const failed = await kubectl("exec", `pod-${sharing[0]}`, "--", "no-such-command");
        expect(failed.code).toBe(127);
      });

      it("runs exec over SPDY/3.1 too, the protocol kubectl falls back to", async () => {
        for (const node of sharing) {
          const exec = await run("kubectl", ["--kubeconfig", kubeconfig, "exec", `pod-${node}`, "--", "hostname"], "", {
            KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false",
          });
          expect(exec.stderr).toBe("");
          expect(exec.stdout).toBe(`${node}\n`);
        }
        const cat = await run(
          "kubectl",
          ["--kubeconfig", kubeconfig, "exec", "-i", "pod-shop-b-gw-1", "--", "cat"],
          "over spdy\n",
          { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false" },
        );
        expect(cat.stdout).toBe("over spdy\n");
      });

      it("passes stdin through exec, and answers kubectl top node from the kubelets' resource metrics", async () => {
        const cat = await run(
          "kubectl",
          ["--kubeconfig", kubeconfig, "exec", "-i", "pod-kiosk-1", "--", "cat"],
          "hello through raven\n",
        );
        expect(cat.stdout).toBe("hello through raven\n");
        const top = await kubectl("top", "node");
        expect(top.code).toBe(0);
        for (const node of sharing)
          expect(top.stdout).toMatch(new RegExp(`^${node}\\s+\\d+m\\s+\\d+%\\s+\\d+Mi\\s+\\d+%`, "m"));
      });

      it("says clearly that kubectl logs -f broke when its edge gateway fails over, and the next one works", async () => {
        const before = await fleetStatus(t.fleet);
        const active = before!.domains
          .find((d) => d.gateway === "gw-factory-a")!
          .active.find((a) => a.type === "proxy")!;
        let out = "";
        let err = "";
        const follow = spawn("kubectl", ["--kubeconfig", kubeconfig, "logs", "-f", "pod-factory-a-node-1"]);
        follow.stdout.on("data", (b: Buffer) => (out += b.toString()));
        follow.stderr.on("data", (b: Buffer) => (err += b.toString()));
        const exited = new Promise<number | null>((resolve) => follow.on("exit", (code) => resolve(code)));
        try {
          await eventually("followed lines", 10_000, () => out.split("\n").length > 5);
          t.fleet.kill(`gateway-${active.nodeName}`);
          const code = await Promise.race([exited, sleep(15_000).then(() => "still running" as const)]);
          expect(code).not.toBe("still running");
          expect(code).not.toBe(0);
          expect(err).toMatch(/error|unexpected EOF|broken|reset/i);
        } finally {
          follow.kill("SIGKILL");
        }
        const again = await eventually("kubectl logs through the new gateway", 15_000, async () => {
          const r = await kubectl("logs", "pod-factory-a-node-1", "--tail=1");
          return r.code === 0 ? r.stdout : undefined;
        });
        expect(again).toBe("factory-a-node-1 line 1\n");
      });
    });
  },
);

function run(
  cmd: string,
  args: string[],
  input?: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
    p.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(input ?? "");
  });
}
