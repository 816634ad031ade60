// `npm run fleet`: starts the demo fleet from a topology file and keeps it running until Ctrl-C, which stops
// everything it started. Shows progress while starting, then the status table, then process events.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseFlags, parseJsonFlag } from "../../shared/args";
import { parseTimings } from "../../shared/config";
import { ConfigError } from "../../shared/errors";
import { loadTopology } from "../../shared/topology";
import { runMain } from "../../shared/process";
import { renderStatus } from "../../shared/status-text";
import { REPO_ROOT } from "./build";
import { Fleet } from "./fleet";
import { tunnelDriverFlag } from "../../lib/vpn";

/**
 * The API double with the CRDs installed, listening on a free port, its kubeconfig in the run dir. It reaches
 * kubelets (kubectl logs, exec, top) through the cloud gateways' HTTP proxy, as kube-apiserver does with an
 * egress selector: `doors` are the cloud candidates' front doors, tried in turn.
 */
async function startDemoCluster(runDir: string, doors: () => { host: string; port: number }[]) {
  const { startRavenCluster } = await import("../../test/kube-api/cluster");
  const { proxyDialer } = await import("../../test/kube-api/node-proxy");
  mkdirSync(runDir, { recursive: true });
  return startRavenCluster(runDir, { nodeDialer: proxyDialer(doors) });
}

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "npm run fleet -- [options]",
    "Start a Raven fleet on this machine: hub, one leaf per edge domain, 2 coordinators, node and gateway actors.",
    {
      topology: {
        type: "string",
        default: join(REPO_ROOT, "topology.json"),
        help: "topology file (nodes with labels, Gateway manifests)",
      },
      "run-dir": {
        type: "string",
        default: join(REPO_ROOT, ".raven", "fleet"),
        help: "config, JetStream store, pid file and logs",
      },
      port: {
        type: "string",
        default: "4222",
        help: "hub client port (leafnodes on port+3200, leaves from port+100); 0 picks free ports",
      },
      timings: { type: "string", help: 'timing overrides as JSON, e.g. {"gatewayHeartbeatMs":50}' },
      "keep-state": { type: "boolean", default: false, help: "keep the hub's KV from the previous run" },
      "no-restart": { type: "boolean", default: false, help: "do not restart actor processes that die" },
      "no-netns": {
        type: "boolean",
        default: false,
        help: "as root, still run everything on loopback (no network namespaces, no proxy)",
      },
      "no-tunnel": {
        type: "boolean",
        default: false,
        help: "as root, proxy mode only: no tunnel mode (host and pod namespaces per node, VXLAN to the gateways, IPsec between them)",
      },
      kube: {
        type: "boolean",
        default: false,
        help: "Kubernetes as the source of truth: start the API double (test/kube-api) with the topology as Nodes, NodePools and Gateways; the coordinators mirror them and write status back (kubectl works against it)",
      },
      "tunnel-driver": {
        type: "string",
        default: "strongswan",
        help: 'tunnel mode\'s VPN between gateways: "strongswan" (IKEv2 PSK, ESP in UDP) or "wireguard" (wireguard-go)',
      },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const topology = loadTopology(flags.topology!);
  const port = Number(flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535 - 3200)
    throw new ConfigError("--port", `${flags.port} is not a usable port (0..${65535 - 3200})`);
  const timings = parseTimings(parseJsonFlag(flags.timings, "timings"));
  const netns = process.getuid?.() === 0 && !flags["no-netns"];
  if (!netns)
    process.stdout.write("proxy mode is off: it needs network namespaces, so run as root (without --no-netns)\n");
  // As root, tunnel mode runs too (it needs the namespaces); --no-tunnel leaves it out.
  const tunnel = netns && !flags["no-tunnel"];
  const tunnelDriver = tunnelDriverFlag(flags["tunnel-driver"]);
  const t0 = Date.now();
  const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`;
  // No kube-apiserver can be had here: the demo's cluster is the test double, which speaks its protocol.
  let fleet: Fleet | null = null;
  const doors = () => [...(fleet?.proxyPlan?.cloud.values() ?? [])].map((l) => ({ host: l.host, port: l.frontPort }));
  const cluster = flags.kube ? await startDemoCluster(flags["run-dir"]!, doors) : null;
  if (cluster) process.stdout.write(`${stamp()} Kubernetes API (double) on ${cluster.api.url}\n`);
  fleet = new Fleet(topology, {
    runDir: flags["run-dir"]!,
    hubPort: port,
    timings,
    keepState: flags["keep-state"],
    ...(flags["no-restart"] ? {} : { restartDelayMs: 1_000 }),
    // As root, every domain gets its own network namespace (InternalIPs really collide) and proxy mode runs.
    ...(netns ? { netns: true } : {}),
    ...(tunnel ? { tunnel: true, tunnelDriver } : {}),
    ...(cluster ? { kubeconfig: cluster.kubeconfig } : {}),
    progress: (line) => process.stdout.write(`${stamp()} ${line}\n`),
    onProcEvent: (e) => {
      if (e.type === "exit")
        process.stdout.write(`${stamp()} process ${e.name} exited (${e.signal ?? `code ${e.code}`})\n`);
    },
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${stamp()} stopping the fleet...\n`);
    await fleet.stop();
    await cluster?.api.close();
    process.stdout.write(`${stamp()} stopped.\n`);
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    await fleet.start();
  } catch (err) {
    await fleet.stop();
    await cluster?.api.close();
    throw err;
  }
  const nc = await fleet.connect();
  const st = await fleet.status(nc);
  await nc.close();
  if (st) process.stdout.write(`\n${renderStatus(st)}\n`);
  const cloud = st?.domains
    .flatMap((d) => d.active.filter((a) => a.type === "proxy").map((a) => fleet.proxyListen(a.nodeName)))
    .find((l) => l);
  if (cloud) {
    const proxy = `http://${cloud.host}:${cloud.frontPort}`;
    process.stdout.write(
      `\nProxy: the active cloud gateway listens on ${cloud.host} (HTTP proxy ${cloud.frontPort}; node ports ${[...cloud.namePorts.keys()].join(", ")} by name). Try:\n` +
        `  curl -p -x ${proxy} http://factory-a-node-1:10255/name      CONNECT, by node name\n` +
        `  curl -x ${proxy} http://shop-b-node-1:9100/metrics         forward proxy (Prometheus proxy_url)\n` +
        `  curl -k -p -x ${proxy} https://kiosk-1:10250/name           TLS end to end, to the solo node\n` +
        `  RAVEN_NATS=${fleet.hubUrl} bin/raven hosts                    DNS mode: node names -> ${cloud.host}\n`,
    );
  }
  const pods = tunnel ? topology.nodes.map((n) => fleet.hostOf(n.name)).filter((h) => h?.podNs && h.podIP) : [];
  if (pods.length >= 2) {
    const [a, b] = [
      pods.find((h) => h!.node.startsWith("factory-a-node")) ?? pods[0]!,
      pods.find((h) => h!.node.startsWith("shop-b-node")) ?? pods[1]!,
    ];
    process.stdout.write(
      `\nTunnel mode (${tunnelDriver}): every node has a pod namespace. Try:\n` +
        `  ip netns exec '${a!.podNs}' ping -c 3 ${b!.podIP}       pod on ${a!.node} -> pod on ${b!.node}, through both gateways\n` +
        `  ip netns exec '${a!.ns}' ip route show dev raven0       ${a!.node}'s VXLAN routes to its gateway\n` +
        `  RAVEN_NATS=${fleet.hubUrl} bin/raven status             the tunnels table at the end\n`,
    );
  }
  if (cluster)
    process.stdout.write(
      `\nKubernetes (the API double, ${cluster.api.url}): the coordinators take Nodes and Gateways from it and write status back. Try:\n` +
        `  export KUBECONFIG=${cluster.kubeconfig}\n` +
        `  kubectl get gw -o yaml                                  status.activeEndpoints and status.nodes\n` +
        `  kubectl get events                                      ActiveEndpointElected / ActiveEndpointLost\n` +
        `  kubectl get cm -n kube-system edge-tunnel-nodes -o yaml  the hosts map (DNS mode)\n` +
        `  kubectl label node factory-a-node-1 raven.openyurt.io/gateway-   and watch raven status follow\n` +
        (netns
          ? `  kubectl logs -f demo-factory-a-node-1                    the node's log, through Raven's proxy\n` +
            `  kubectl exec demo-shop-b-gw-1 -- hostname               nodes sharing 192.168.1.11 each answer as themselves\n` +
            `  kubectl top node                                        from the kubelets' /metrics/resource\n`
          : ""),
    );
  process.stdout.write(
    `\nFleet running. Try:\n  RAVEN_NATS=${fleet.hubUrl} bin/raven status\n  RAVEN_NATS=${fleet.hubUrl} bin/raven gateways -o yaml\n` +
      `  RAVEN_NATS=${fleet.hubUrl} bin/raven ui --port 8080     then open http://127.0.0.1:8080/ (the live statechart debugger)\n` +
      `Every actor serves Prometheus metrics: see "serving metrics" in .raven/fleet/logs/*.log.\nCtrl-C stops everything.\n`,
  );
});
