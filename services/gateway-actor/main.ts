// Gateway-actor process: one gateway candidate, connected only to its own domain's NATS server.
import { msFlag, parseFlags, requireFlag } from "../../shared/args";
import { systemClock } from "../../shared/clock";
import { loadConfigFile } from "../../shared/config";
import { ConfigError, describeError } from "../../shared/errors";
import { createMeshInspector } from "../../shared/inspect";
import { createLogger } from "../../shared/log";
import { metricsPortOf } from "../../shared/metrics-server";
import { serveActorProcess } from "../../shared/actor-process";
import { connectDaemon, openBuckets, type NatsConnection } from "../../shared/nats";
import { resolve } from "node:path";
import { Directory } from "../../shared/directory";
import type { ActorInspector } from "../../shared/inspect";
import type { Logger } from "../../shared/log";
import { GATEWAYS_PATH, KubeClient, KubeInformer, candidacyOf, fetchNode } from "../../lib/kube";
import { StrongSwanDriver, WireGuardDriver, tunnelDriverFlag, underlayMtuFlag } from "../../lib/vpn";
import { domainOf, domainProblem } from "../../shared/domains";
import { TunnelManager } from "./tunnel/manager";
import { pingProbe } from "./tunnel/probe";
import { runMain } from "../../shared/process";
import { isDomainName, isObjectName } from "../../shared/protocol";
import { GatewayActorService } from "./gateway";
import { proxyReporter } from "./proxy-report";
import { ProxyHost, defaultProxyConfig, type ChannelTransport, type ProxyConfig } from "./proxy";

function portFlag(value: string | undefined, key: string): number {
  const n = Number(value);
  if (!/^\d{1,5}$/.test(value ?? "") || n > 65535)
    throw new ConfigError(`--${key}`, `${JSON.stringify(value)} is not a port number`);
  return n;
}

function parseProxyFlags(flags: Record<string, string | boolean | undefined>): ProxyConfig {
  const namePorts = new Map<number, number>();
  for (const item of String(flags["proxy-name-ports"] ?? "")
    .split(",")
    .filter(Boolean)) {
    const [target, listen = target] = item.split("=");
    namePorts.set(portFlag(target, "proxy-name-ports"), portFlag(listen, "proxy-name-ports"));
  }
  const responseTimeoutMs = msFlag(flags["proxy-response-timeout-ms"], "proxy-response-timeout-ms");
  return {
    ...defaultProxyConfig(String(flags["proxy-pki"])),
    bindHost: String(flags["proxy-bind"]),
    dataPort: portFlag(flags["proxy-port"] as string, "proxy-port"),
    frontPort: portFlag(flags["proxy-front-port"] as string, "proxy-front-port"),
    namePorts,
    transport: parseTransport(flags["proxy-transport"]),
    ...(responseTimeoutMs !== undefined ? { responseTimeoutMs } : {}),
  };
}

function parseTransport(value: unknown): ChannelTransport {
  if (value === "tls" || value === "tcp") return value;
  throw new ConfigError("--proxy-transport", `must be "tls" or "tcp", got ${JSON.stringify(value)}`);
}

/** Tunnel mode's manager with the chosen VPN driver, its daemon started warm (standby: no peers). */
async function startTunnel(
  nc: NatsConnection,
  node: string,
  domain: string,
  flags: Record<string, string | boolean | undefined>,
  log: Logger,
  inspector: ActorInspector,
) {
  const driverName = tunnelDriverFlag(flags["tunnel-driver"]);
  const pskFile = requireFlag(flags["tunnel-psk"] as string | undefined, "tunnel-psk");
  const stateDir = requireFlag(flags["tunnel-state-dir"] as string | undefined, "tunnel-state-dir");
  const netns = flags["tunnel-netns"] as string | undefined;
  const underlayMtu = underlayMtuFlag(flags["tunnel-underlay-mtu"]);
  const common = { stateDir: resolve(stateDir), pskFile: resolve(pskFile), underlayMtu, ...(netns ? { netns } : {}) };
  // The latency probe pings between the gateways' pod-CIDR anchors on lo, which both drivers keep.
  const driver =
    driverName === "strongswan"
      ? new StrongSwanDriver({ ...common, initiateTimeoutSec: 2 })
      : new WireGuardDriver({ ...common, node });
  const probe = pingProbe(netns);
  const directory = new Directory(await openBuckets(nc), systemClock, log);
  directory.start();
  const manager = new TunnelManager({
    nc,
    node,
    domain,
    directory,
    driver,
    probe,
    clock: systemClock,
    log: log.child({ tunnel: driverName }),
    inspector,
  });
  manager.start();
  return {
    manager,
    async stop() {
      await manager.stop();
      probe.close();
      directory.stop();
    },
  };
}

/**
 * The domain and Gateway of this node as the cluster says. While no Gateway lists the node as an endpoint
 * (it is a member, not a candidate), it waits on a watch of the Gateways (as OpenYurt's agent watches them on
 * every node) and starts once one does. A node that stops being listed later keeps running: its heartbeats
 * are counted and ignored until it is restarted.
 */
async function candidacyFromKube(
  node: string,
  flags: { domain?: string; gateway?: string; kubeconfig?: string },
): Promise<{ domain: string; gateway: string }> {
  for (const f of ["domain", "gateway"] as const)
    if (flags[f] !== undefined) throw new ConfigError(`--${f}`, "comes from the cluster with --from-kube");
  const client = await KubeClient.load(flags.kubeconfig);
  const log = createLogger({ service: "gateway-actor", actor: `gateway/${node}`, node });
  const facts = await fetchNode(client, node);
  const problem = domainProblem(facts);
  if (problem) throw new ConfigError("--from-kube", problem);
  let informer: KubeInformer | null = null;
  try {
    return await new Promise((resolve) => {
      let told = false;
      let due = false;
      // Once the first list is in, after every batch of changes: a Gateway naming this node may have come.
      const check = () => {
        due = false;
        const candidacy = candidacyOf(facts, informer!.list());
        if (candidacy) return resolve({ domain: domainOf(facts), gateway: candidacy.gateway });
        if (!told) log.info("no Gateway lists this node as an endpoint: waiting until one does");
        told = true;
      };
      const soon = () => {
        if (due || informer!.stats.lists === 0) return;
        due = true;
        setImmediate(check);
      };
      informer = new KubeInformer({
        client,
        path: GATEWAYS_PATH,
        clock: systemClock,
        log,
        onChange: soon,
        onSynced: soon,
      });
      informer.start();
    });
  } finally {
    await (informer as KubeInformer | null)?.stop();
    client.close();
  }
}

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "gateway-actor --node NAME (--domain POOL --gateway GW | --from-kube) [options]",
    "Raven gateway candidate: heartbeats, fenced standby/active role.",
    {
      nats: { type: "string", default: "nats://127.0.0.1:4222", help: "this domain's NATS server URL(s)" },
      node: { type: "string", help: "node name" },
      domain: { type: "string", help: "network domain (node pool)" },
      gateway: { type: "string", help: "Gateway record this candidate serves (the node name when solo)" },
      "from-kube": {
        type: "boolean",
        help: "take the domain and Gateway from the cluster (this node's Node and the Gateway listing it as an endpoint); wait while none does",
      },
      kubeconfig: { type: "string", help: "with --from-kube: the cluster's kubeconfig (default: in-cluster)" },
      config: { type: "string", help: "Raven config JSON (timings)" },
      "proxy-pki": {
        type: "string",
        help: "enable proxy mode: directory with ca.crt, and proxy.key/proxy.crt/secret (cloud) or token (edge)",
      },
      "proxy-bind": { type: "string", default: "0.0.0.0", help: "cloud: address the proxy listeners bind" },
      "proxy-port": { type: "string", default: "10262", help: "cloud: port edge gateways dial in to" },
      "proxy-front-port": {
        type: "string",
        default: "10264",
        help: "cloud: HTTP proxy port (CONNECT and absolute URLs)",
      },
      "proxy-response-timeout-ms": {
        type: "string",
        help: "cloud: how long the forward proxy waits for a target's response head before a 504 (default 30000)",
      },
      "proxy-transport": {
        type: "string",
        default: "tls",
        help: 'channels between gateways: "tls", or "tcp" where the underlay is already private/encrypted (both ends must agree)',
      },
      "proxy-name-ports": {
        type: "string",
        default: "",
        help: 'cloud: name-routed node ports (DNS mode), e.g. "10250,10255" or "10250=20250" to listen elsewhere',
      },
      "metrics-port": { type: "string", help: "serve Prometheus /metrics on this port (0 or absent = off)" },
      tunnel: {
        type: "boolean",
        help: "tunnel mode: while active for a tunnel endpoint, VPN tunnels to the other domains' active gateways",
      },
      "tunnel-driver": {
        type: "string",
        default: "strongswan",
        help: 'tunnel mode: "strongswan" (IKEv2 PSK, ESP in UDP 4500) or "wireguard"',
      },
      "tunnel-psk": {
        type: "string",
        help: "tunnel mode: file with the fleet's pre-shared key (mode 0600; setup creates it, there is no default)",
      },
      "tunnel-state-dir": {
        type: "string",
        help: "tunnel mode: directory for the VPN daemon's files (not under /run)",
      },
      "tunnel-netns": {
        type: "string",
        help: "tunnel mode: the network namespace holding this node's host network (default: the process's own)",
      },
      "tunnel-underlay-mtu": {
        type: "string",
        default: "1500",
        help: "tunnel mode: MTU of the underlay between gateways",
      },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const node = requireFlag(flags.node, "node");
  const { domain, gateway } = flags["from-kube"]
    ? await candidacyFromKube(node, flags)
    : { domain: requireFlag(flags.domain, "domain"), gateway: requireFlag(flags.gateway, "gateway") };
  if (!isObjectName(node)) throw new ConfigError("--node", `${JSON.stringify(node)} is not a valid node name`);
  if (!isDomainName(domain)) throw new ConfigError("--domain", `${JSON.stringify(domain)} is not a DNS label`);
  if (!isObjectName(gateway)) throw new ConfigError("--gateway", `${JSON.stringify(gateway)} is not a valid name`);
  const config = loadConfigFile(flags.config);
  const log = createLogger(
    { service: "gateway-actor", actor: `gateway/${node}`, node, domain, gateway },
    { term: () => service.actor.getSnapshot().context.term },
  );
  const metricsPort = metricsPortOf(flags["metrics-port"]);
  const nc = await connectDaemon(flags.nats!, `gateway-actor/${node}`);
  const proxy = flags["proxy-pki"]
    ? new ProxyHost({
        // Bundled: the worker bundle sits next to this one; from source (tsx): the worker's TypeScript.
        workerUrl: import.meta.url.endsWith(".mjs")
          ? new URL("./proxy-worker.mjs", import.meta.url)
          : new URL("./proxy/worker.ts", import.meta.url),
        nats: flags.nats!,
        node,
        domain,
        gateway,
        config: parseProxyFlags(flags),
        log,
        logBindings: { service: "gateway-actor", actor: `gateway/${node}`, node, domain, gateway },
        onFatal: (err) => {
          log.fatal({ err: describeError(err) }, "proxy thread failed");
          process.exit(1);
        },
        onStats: proxyReporter(nc, node, domain, log),
      })
    : undefined;
  const inspector = createMeshInspector(nc, { actorSource: `gateway/${node}`, domain });
  const tunnel = flags.tunnel ? await startTunnel(nc, node, domain, flags, log, inspector) : undefined;
  const service = new GatewayActorService({
    nc,
    node,
    domain,
    gateway,
    timings: config.timings,
    clock: systemClock,
    log,
    proxy,
    tunnel: tunnel?.manager,
    onFatal: () => process.exit(1),
    inspector,
  });
  service.start();
  log.info({ nats: flags.nats }, "gateway actor started");
  await serveActorProcess({
    log,
    metricsPort,
    connections: [nc],
    inspector,
    stop: async () => {
      await service.drain();
      service.stop();
      await proxy?.stop();
      await tunnel?.stop();
    },
    graceMs: config.timings.drainTimeoutMs + 2_000,
  });
});
