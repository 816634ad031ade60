// Node-actor process: registers the node and heartbeats, connected only to its own domain's NATS server.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { msFlag, parseFlags, parseJsonFlag, requireFlag } from "../../shared/args";
import { systemClock } from "../../shared/clock";
import { loadConfigFile } from "../../shared/config";
import { domainOf, domainProblem, type NodeFacts } from "../../shared/domains";
import { ConfigError } from "../../shared/errors";
import { createMeshInspector } from "../../shared/inspect";
import { createLogger } from "../../shared/log";
import { metricsPortOf } from "../../shared/metrics-server";
import { serveActorProcess } from "../../shared/actor-process";
import { connectDaemon, openBuckets, type NatsConnection } from "../../shared/nats";
import { runMain } from "../../shared/process";
import { isObjectName } from "../../shared/protocol";
import { isIPv4 } from "../../shared/topology";
import { NodeActorService } from "./node";
import { RouteAgent } from "./route-agent";
import { Directory } from "../../shared/directory";
import type { Timings } from "../../shared/config";
import type { Logger } from "../../shared/log";
import { KubeClient, fetchNode } from "../../lib/kube";
import { RouteDriver } from "../../lib/vxlan";
import { TUNNEL_DRIVERS, tunnelDriverFlag, underlayMtuFlag, vpnOverheadFor } from "../../lib/vpn";

function portList(value: string | undefined, key: string): number[] {
  const ports = (value ?? "").split(",").filter(Boolean).map(Number);
  for (const p of ports)
    if (!Number.isInteger(p) || p < 1 || p > 65535)
      throw new ConfigError(`--${key}`, `${JSON.stringify(value)} is not a comma-separated port list`);
  return ports;
}

/** The demo's kubelet stand-in, when asked for: something real for the proxy to reach on this node. */
async function startDemoTarget(node: string, host: string, flags: Record<string, string | boolean | undefined>) {
  const httpPorts = portList(flags["target-http-ports"] as string, "target-http-ports");
  const httpsPorts = portList(flags["target-https-ports"] as string, "target-https-ports");
  if (httpPorts.length + httpsPorts.length === 0) return null;
  let tls: { key: Buffer; cert: Buffer } | undefined;
  if (httpsPorts.length > 0) {
    const dir = requireFlag(flags["target-tls-dir"] as string | undefined, "target-tls-dir");
    try {
      tls = { key: readFileSync(join(dir, "kubelet.key")), cert: readFileSync(join(dir, "kubelet.crt")) };
    } catch (err) {
      throw new ConfigError(
        "--target-tls-dir",
        `cannot read kubelet.key/kubelet.crt in ${dir}: ${(err as Error).message}`,
      );
    }
  }
  const idleTimeoutMs = msFlag(flags["target-idle-ms"], "target-idle-ms");
  // Demo code, loaded only when asked for (lib/demo-kubelet).
  const { startTargetServer } = await import("../../lib/demo-kubelet");
  return startTargetServer({
    node,
    host,
    httpPorts,
    httpsPorts,
    ...(tls ? { tls } : {}),
    ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}),
  });
}

async function startRouteAgent(
  nc: NatsConnection,
  node: string,
  domain: string,
  flags: Record<string, string | boolean | undefined>,
  timings: Timings,
  log: Logger,
) {
  const driver = tunnelDriverFlag(flags["tunnel-driver"]);
  const underlayMtu = underlayMtuFlag(flags["tunnel-underlay-mtu"]);
  const netns = flags["tunnel-netns"] as string | undefined;
  const directory = new Directory(await openBuckets(nc), systemClock, log);
  directory.start();
  const agent = new RouteAgent({
    directory,
    node,
    domain,
    driver: new RouteDriver(netns ? { netns } : {}),
    link: {
      underlayMtu,
      vpnOverheadBytes: vpnOverheadFor(driver, underlayMtu),
      tunnelDev: TUNNEL_DRIVERS[driver].tunnelDev,
    },
    clock: systemClock,
    log: log.child({ netns: netns ?? null }),
    retryMs: timings.retryMs,
    resyncMs: 10_000,
  });
  agent.start();
  return {
    async stop() {
      await agent.stop();
      directory.stop();
    },
  };
}

type FactFlags = { labels?: string; "internal-ip"?: string; "pod-cidr"?: string; kubeconfig?: string };

function factsFromFlags(name: string, flags: FactFlags): NodeFacts {
  const internalIP = requireFlag(flags["internal-ip"], "internal-ip");
  if (!isIPv4(internalIP))
    throw new ConfigError("--internal-ip", `${JSON.stringify(internalIP)} is not an IPv4 address`);
  const labels = parseJsonFlag(flags.labels ?? "{}", "labels");
  if (typeof labels !== "object" || labels === null || !Object.values(labels).every((v) => typeof v === "string")) {
    throw new ConfigError("--labels", "must be a JSON object of string values");
  }
  return {
    name,
    labels: labels as Record<string, string>,
    internalIP,
    ...(flags["pod-cidr"] ? { podCIDR: flags["pod-cidr"] } : {}),
  };
}

/** The facts as the node's Node object says (the coordinator places it by the same labels). */
async function factsFromKube(name: string, flags: FactFlags): Promise<NodeFacts> {
  for (const f of ["labels", "internal-ip", "pod-cidr"] as const)
    if (flags[f] !== undefined) throw new ConfigError(`--${f}`, "comes from the Node object with --from-kube");
  const client = await KubeClient.load(flags.kubeconfig);
  try {
    const node = await fetchNode(client, name);
    if (!isIPv4(node.internalIP))
      throw new ConfigError(
        "--from-kube",
        `Node ${name} reports no IPv4 InternalIP (${JSON.stringify(node.internalIP)})`,
      );
    return {
      name,
      labels: { ...node.labels },
      internalIP: node.internalIP,
      ...(node.podCIDR ? { podCIDR: node.podCIDR } : {}),
    };
  } finally {
    client.close();
  }
}

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "node-actor --node NAME (--internal-ip IP [--labels JSON] | --from-kube) [options]",
    "Raven node actor: registration and heartbeat.",
    {
      nats: { type: "string", default: "nats://127.0.0.1:4222", help: "this domain's NATS server URL(s)" },
      node: { type: "string", help: "node name" },
      labels: {
        type: "string",
        help: 'node labels as JSON, e.g. {"apps.openyurt.io/nodepool":"factory-a"} (default {})',
      },
      "from-kube": {
        type: "boolean",
        help: "take labels, InternalIP and podCIDR from this node's Node object (in-cluster, or --kubeconfig)",
      },
      kubeconfig: { type: "string", help: "with --from-kube: the cluster's kubeconfig (default: in-cluster)" },
      "internal-ip": { type: "string", help: "the node's InternalIP" },
      "pod-cidr": { type: "string", help: "the node's podCIDR" },
      config: { type: "string", help: "Raven config JSON (timings)" },
      "target-http-ports": {
        type: "string",
        default: "",
        help: "demo: serve a kubelet stand-in (answers with the node name) on these ports of the InternalIP",
      },
      "target-https-ports": {
        type: "string",
        default: "",
        help: "demo: the same over TLS (kubelet.crt/kubelet.key from --target-tls-dir)",
      },
      "target-tls-dir": { type: "string", help: "demo: directory with kubelet.crt and kubelet.key" },
      "target-idle-ms": {
        type: "string",
        help: "demo: close a keep-alive connection idle this long, unannounced (default: Node's 5 s, announced)",
      },
      "metrics-port": { type: "string", help: "serve Prometheus /metrics on this port (0 or absent = off)" },
      tunnel: {
        type: "boolean",
        help: "tunnel mode: keep a VXLAN device toward the domain's active gateway and routes to the other domains' pod CIDRs",
      },
      "tunnel-netns": {
        type: "string",
        help: "tunnel mode: the network namespace holding this node's host network (default: the process's own)",
      },
      "tunnel-driver": {
        type: "string",
        default: "strongswan",
        help: 'tunnel mode: the VPN between gateways, "strongswan" or "wireguard" (sets the MTU overhead)',
      },
      "tunnel-underlay-mtu": {
        type: "string",
        default: "1500",
        help: "tunnel mode: MTU of the LAN and underlay links",
      },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const name = requireFlag(flags.node, "node");
  if (!isObjectName(name)) throw new ConfigError("--node", `${JSON.stringify(name)} is not a valid node name`);
  const facts = flags["from-kube"] ? await factsFromKube(name, flags) : factsFromFlags(name, flags);
  const problem = domainProblem(facts);
  if (problem) throw new ConfigError("--labels", problem);
  const domain = domainOf(facts);
  const config = loadConfigFile(flags.config);
  const log = createLogger({ service: "node-actor", actor: `node/${name}`, node: name, domain });
  const nc = await connectDaemon(flags.nats!, `node-actor/${name}`);
  const metricsPort = metricsPortOf(flags["metrics-port"]);
  const inspector = createMeshInspector(nc, { actorSource: `node/${name}`, domain });
  const service = new NodeActorService({
    nc,
    facts,
    domain,
    timings: config.timings,
    clock: systemClock,
    log,
    onFatal: () => process.exit(1),
    inspector,
  });
  service.start();
  const routes = flags.tunnel ? await startRouteAgent(nc, name, domain, flags, config.timings, log) : undefined;
  const target = await startDemoTarget(name, facts.internalIP, flags);
  if (target) log.info({ ports: target.ports }, "demo target serving");
  await serveActorProcess({
    log,
    metricsPort,
    connections: [nc],
    inspector,
    stop: async () => {
      await target?.close();
      // The routes stay: pods keep their path while the node actor restarts (a later run adopts them).
      await routes?.stop();
      service.stop();
    },
  });
});
