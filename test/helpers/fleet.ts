// Test fleets: a real fleet (real nats-server hub and leaves, real actor processes) in a fresh temporary run
// directory on free ports, with an observer attached. `stop()` stops every process the fleet started and
// removes the directory; tests call it in afterAll so a failing test leaves nothing running.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Timings } from "../../shared/config";
import { pollUntil } from "../../shared/poll";
import type { StatusReply } from "../../shared/protocol";
import { loadTopology, parseTopology, type Topology } from "../../shared/topology";
import { REPO_ROOT } from "../../services/fleet/build";
import { Fleet } from "../../services/fleet/fleet";
import { FleetObserver } from "../../services/fleet/observer";

export type TestFleet = { fleet: Fleet; observer: FleetObserver; runDir: string; stop(): Promise<void> };

export function defaultTopology(): Topology {
  return loadTopology(join(REPO_ROOT, "topology.json"));
}

/** cloud (2 candidates), edge-a (2 candidates + 1 node), a solo node: 7 actor processes. With `loopback`,
 * InternalIPs are distinct 127.x addresses, so proxy mode can run without network namespaces. */
export function smallTopology(loopback = false): Topology {
  const node = (name: string, pool: string, ip: string, gw?: string) => ({
    name,
    labels: { "apps.openyurt.io/nodepool": pool, ...(gw ? { "raven.openyurt.io/gateway": gw } : {}) },
    internalIP: ip,
  });
  const ip = (usual: string, lo: string) => (loopback ? lo : usual);
  const gateway = (name: string, nodes: string[], exposeType = "") => ({
    metadata: { name },
    spec: {
      exposeType,
      endpoints: nodes.flatMap((n) => [
        { nodeName: n, type: "proxy" },
        { nodeName: n, type: "tunnel" },
      ]),
    },
  });
  return parseTopology({
    name: "small",
    nodes: [
      node("c-gw-1", "cloud", ip("10.0.0.1", "127.0.1.1"), "gw-c"),
      node("c-gw-2", "cloud", ip("10.0.0.2", "127.0.1.2"), "gw-c"),
      node("a-gw-1", "edge-a", ip("192.168.0.1", "127.0.2.1"), "gw-a"),
      node("a-gw-2", "edge-a", ip("192.168.0.2", "127.0.2.2"), "gw-a"),
      node("a-node-1", "edge-a", ip("192.168.0.3", "127.0.2.3"), "gw-a"),
      node("solo-1", "edge-s", ip("192.168.0.1", "127.0.3.1")),
    ],
    gateways: [gateway("gw-c", ["c-gw-1", "c-gw-2"], "PublicIP"), gateway("gw-a", ["a-gw-1", "a-gw-2"])],
  });
}

export async function startTestFleet(
  topology: Topology,
  opts: {
    timings?: Partial<Timings>;
    restartDelayMs?: number;
    proxy?: boolean;
    netns?: boolean;
    tunnel?: boolean;
    tunnelDriver?: "strongswan" | "wireguard";
    demoTargetIdleMs?: number;
    proxyResponseTimeoutMs?: number;
    kubeconfig?: string;
    kubeAdminConfig?: string;
  } = {},
): Promise<TestFleet> {
  const runDir = mkdtempSync(join(tmpdir(), "raven-test-"));
  const fleet = new Fleet(topology, {
    runDir,
    hubPort: 0,
    ...(opts.timings ? { timings: opts.timings } : {}),
    restartDelayMs: opts.restartDelayMs ?? 1_000,
    ...(opts.proxy ? { proxy: true } : {}),
    ...(opts.netns ? { netns: true } : {}),
    ...(opts.tunnel ? { tunnel: true, tunnelDriver: opts.tunnelDriver ?? "strongswan" } : {}),
    ...(opts.demoTargetIdleMs !== undefined ? { demoTargetIdleMs: opts.demoTargetIdleMs } : {}),
    ...(opts.proxyResponseTimeoutMs !== undefined ? { proxyResponseTimeoutMs: opts.proxyResponseTimeoutMs } : {}),
    ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}),
    ...(opts.kubeAdminConfig ? { kubeAdminConfig: opts.kubeAdminConfig } : {}),
    progress: (l) => process.env.RAVEN_TEST_VERBOSE && console.log(l),
  });
  let observer: FleetObserver | null = null;
  const stop = async () => {
    await observer?.stop().catch(() => {});
    await fleet.stop();
    if (!process.env.RAVEN_KEEP_RUN_DIR) rmSync(runDir, { recursive: true, force: true });
  };
  try {
    await fleet.start();
    observer = await FleetObserver.start(fleet.hubUrl);
  } catch (err) {
    await stop();
    throw new Error(`fleet did not start (logs were in ${runDir}): ${(err as Error).message}`);
  }
  return { fleet, observer, runDir, stop };
}

export async function fleetStatus(fleet: Fleet, timeoutMs = 1_000): Promise<StatusReply | null> {
  const nc = await fleet.connect();
  try {
    return await fleet.status(nc, timeoutMs);
  } finally {
    await nc.close();
  }
}

/** Polls until `check` returns a value (not undefined/false) or the time is up (shared/poll.ts). */
export const eventually = pollUntil;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
