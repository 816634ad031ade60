// The fleet launcher (the embedded default): from a topology, it starts the hub, one leaf per edge domain,
// the coordinator replicas and every node and gateway actor as processes on this machine, seeds the Gateway
// records, and waits until every domain has its active gateways. Processes are supervised (restarted after
// restartDelayMs when they die, backing off), so a chaos test only has to kill. `stop()` stops everything it
// started.
//
// Start-up is paced, so that the launcher's own transient cannot start a flap on a small machine: the
// coordinators first, then the gateway candidates and then the node actors START_BATCH at a time, each batch
// once the previous one is on the mesh (candidates heartbeating, nodes ready). The control path (hub, leaves,
// coordinators, gateway candidates) runs at CONTROL_NICE when the launcher is root: a busy node actor or an
// outside job at the default priority cannot starve the heartbeats that leases hang on.
//
// Over 400 lines, one concept: the launch sequence and the process table it fills. What it uses lives apart:
// the namespace plan (netns-plan.ts, netns.ts), the proxy plan and PKI (dataplane.ts), NATS configs
// (nats-config.ts), the actors' command lines (actor-args.ts), the records it seeds (seed.ts), the waits
// (readiness.ts), process supervision (procs.ts), its options (options.ts).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { defaultTimings, parseTimings, type Timings } from "../../shared/config";
import { domainOf } from "../../shared/domains";
import { gatewayKey, proxyPortsOf } from "../../shared/gateway";
import { ensurePskFile } from "../../lib/vpn";
import { ensurePki } from "../../shared/pki";
import { MeshUnavailableError, describeError } from "../../shared/errors";
import { connectOnce, type NatsConnection } from "../../shared/nats";
import type { StatusReply } from "../../shared/protocol";
import { partitionOf, type Topology } from "../../shared/topology";
import { buildEntrypoints, REPO_ROOT, type Entrypoint } from "./build";
import type { FleetOptions } from "./options";

export type { FleetOptions } from "./options";
import { FleetReadiness, type ActorInfo } from "./readiness";
import { gatewayActorArgs, nodeActorArgs } from "./actor-args";
import { seedFleet } from "./seed";
import { planProxy, writeDomainPki, type ProxyListen, type ProxyPlan } from "./dataplane";
import {
  createNetns,
  destroyNetns,
  findFreeSubnetIndex,
  newNetnsPrefix,
  nsExec,
  planNetns,
  reapStaleNetns,
  type NetnsPlan,
  type NodeHost,
} from "./netns";
import { hubConfig, leafConfig } from "./nats-config";
import { assertPortsFree, freePorts, ManagedProc, reapStale, waitForPort, writePidFile, type ProcSpec } from "./procs";

/**
 * The fleet's nats-servers run on one Go scheduler thread unless GOMAXPROCS says otherwise: they route tens to
 * hundreds of small messages a second, and with one P per core the Go runtime's idle spinning and wake-ups
 * cost more than the routing (bench:stability, quiet window: leaves 0.71 -> 0.58 %, hub 2.75 -> 2.2 % of a
 * core; failover under load unchanged).
 */
const NATS_ENV: Record<string, string> = { GOMAXPROCS: process.env.GOMAXPROCS ?? "1" };

/** The nice value of the control path's processes (root only). */
export const CONTROL_NICE = -5;
/** Actor processes started together; the next ones start once these are on the mesh. */
export const START_BATCH = 4;

export type { ActorInfo } from "./readiness";

export class Fleet {
  readonly procs = new Map<string, ManagedProc>();
  hubUrl = "";
  hubLeafPort = 0;
  readonly leafUrls = new Map<string, string>();
  /** Gateway actor process name -> what it is. */
  readonly gatewayActors = new Map<string, ActorInfo>();
  readonly nodeActors = new Map<string, ActorInfo>();
  private readonly runDir: string;
  private readonly pidFile: string;
  private readonly readiness: FleetReadiness;
  netns: NetnsPlan | null = null;
  proxyPlan: ProxyPlan | null = null;

  constructor(
    readonly topology: Topology,
    private readonly options: FleetOptions,
  ) {
    this.runDir = resolve(options.runDir);
    this.pidFile = join(this.runDir, "pids.json");
    this.readiness = new FleetReadiness({
      connect: () => this.connect(),
      topology,
      runDir: this.runDir,
      progress: (line) => this.progress(line),
    });
  }

  private progress(line: string): void {
    this.options.progress?.(line);
  }

  /** Domains that get a leaf: every domain but the cloud one (whose Gateway is exposed). */
  edgeDomains(): string[] {
    const { units } = partitionOf(this.topology);
    const cloud = new Set<string>();
    for (const gw of this.topology.gateways) {
      const unit = units.get(gatewayKey(gw.metadata.name));
      if (gw.spec.exposeType !== "" && unit?.domain) cloud.add(unit.domain);
    }
    const all = new Set(this.topology.nodes.map((n) => domainOf(n)));
    return [...all].filter((d) => !cloud.has(d)).sort();
  }

  /** Every domain, the cloud's included. */
  allDomains(): string[] {
    return [...new Set(this.topology.nodes.map((n) => domainOf(n)))].sort();
  }

  /** Where a cloud candidate's proxy listens (proxy mode only). */
  proxyListen(node: string): ProxyListen | undefined {
    return this.proxyPlan?.cloud.get(node);
  }

  /** A node's own namespaces and addresses (tunnel mode only). */
  hostOf(node: string): NodeHost | undefined {
    return this.netns?.domains.flatMap((d) => d.hosts).find((h) => h.node === node);
  }

  /** The namespace a domain's processes run in (netns mode only). */
  namespaceOf(domain: string): string | undefined {
    return this.netns?.domains.find((d) => d.domain === domain)?.ns;
  }

  natsUrlFor(domain: string): string {
    return this.leafUrls.get(domain) ?? this.hubUrl;
  }

  async start(): Promise<void> {
    const { options } = this;
    rmSync(join(this.runDir, "logs"), { recursive: true, force: true });
    mkdirSync(join(this.runDir, "logs"), { recursive: true });
    const reaped = reapStale(this.pidFile, this.runDir);
    if (reaped) this.progress(`reaped ${reaped} process(es) left by an earlier run in ${this.runDir}`);
    const timings: Timings = parseTimings({ ...defaultTimings, ...options.timings });
    const configFile = join(this.runDir, "raven.json");
    writeFileSync(configFile, JSON.stringify({ timings }, null, 2));

    if (options.netns || options.tunnel) await this.setupNetns();
    // In namespaces the cloud domain needs a leaf too: its actors cannot reach the hub's loopback listener.
    const edges = this.netns ? this.allDomains() : this.edgeDomains();
    const leafHost = this.netns?.hostIP ?? "127.0.0.1";
    const ports = options.hubPort ? [] : await freePorts(2 + edges.length);
    const hubPort = options.hubPort || ports[0]!;
    this.hubLeafPort = options.hubPort ? options.hubPort + 3200 : ports[1]!;
    const leafPorts = edges.map((_, i) => (options.hubPort ? options.hubPort + 100 + i : ports[2 + i]!));
    if (options.hubPort) await assertPortsFree([hubPort, this.hubLeafPort, ...leafPorts]);

    this.progress(`[1/5] building actor bundles`);
    const bundles = await buildEntrypoints();

    // Hub
    const storeDir = join(this.runDir, "jetstream");
    if (!options.keepState) rmSync(storeDir, { recursive: true, force: true });
    const hubConf = join(this.runDir, "hub.conf");
    writeFileSync(
      hubConf,
      hubConfig({
        configDir: this.runDir,
        baseConf: join(REPO_ROOT, "nats.conf"),
        ports: { client: hubPort, leafnode: this.hubLeafPort },
        storeDir,
      }),
    );
    this.hubUrl = `nats://127.0.0.1:${hubPort}`;
    this.add({
      name: "hub",
      kind: "hub",
      command: "nats-server",
      args: ["-c", hubConf],
      env: NATS_ENV,
      logFile: this.logFile("hub"),
    });
    const hub = this.procs.get("hub")!;
    hub.start();
    await waitForPort(hubPort, 10_000).catch((err) => {
      throw new MeshUnavailableError(
        `the hub did not start: ${hub.spawnError ?? describeError(err)}; see ${this.logFile("hub")}`,
      );
    });
    this.progress(`[2/5] hub ready on ${this.hubUrl} (leafnodes on ${this.hubLeafPort})`);

    // Leaves
    edges.forEach((domain, i) => {
      const conf = join(this.runDir, `leaf-${domain}.conf`);
      writeFileSync(
        conf,
        leafConfig({ domain, port: leafPorts[i]!, hubLeafnodePort: this.hubLeafPort, host: leafHost }),
      );
      this.leafUrls.set(domain, `nats://${leafHost}:${leafPorts[i]}`);
      this.add({
        name: `leaf-${domain}`,
        kind: "leaf",
        command: "nats-server",
        args: ["-c", conf],
        env: NATS_ENV,
        logFile: this.logFile(`leaf-${domain}`),
      });
      this.procs.get(`leaf-${domain}`)!.start();
    });
    await Promise.all(leafPorts.map((p) => waitForPort(p, 10_000, leafHost)));
    this.progress(
      `[3/5] ${edges.length} leaf server(s) ready: ${edges.map((d) => `${d}=${this.leafUrls.get(d)}`).join(" ")}`,
    );

    // Gateway records (in proxy mode with the cloud endpoints' addresses filled in)
    const pkiDirs = options.proxy || options.netns || options.tunnel ? await this.setupProxy() : null;
    const pskFile = options.tunnel ? ensurePskFile(join(this.runDir, "secrets", "tunnel.psk")) : null;
    await this.seedGateways();

    // Coordinators, nodes and gateway candidates
    // Every actor process serves Prometheus /metrics on a port of its own (see `metricsPorts`); in a domain's
    // namespace that port is on the namespace's own addresses.
    const metricsPorts = await freePorts(
      (options.coordinators ?? 2) +
        this.topology.nodes.length +
        [...partitionOf(this.topology).units.values()].reduce((n, u) => n + u.candidates.length, 0),
    );
    const node = (entry: Entrypoint, args: string[], domain?: string) => {
      const argv = [
        process.execPath,
        "--enable-source-maps",
        bundles[entry],
        ...args,
        "--config",
        configFile,
        "--metrics-port",
        String(metricsPorts.pop() ?? 0),
      ];
      const ns = domain ? this.namespaceOf(domain) : undefined;
      const [command, ...rest] = ns ? nsExec(ns, argv) : argv;
      return { command: command!, args: rest };
    };
    const env = { RAVEN_LOG_LEVEL: options.logLevel ?? "info" };
    const restartDelayMs = options.restartDelayMs;
    for (let i = 1; i <= (options.coordinators ?? 2); i++) {
      const name = `coordinator-${i}`;
      this.add({
        name,
        kind: "coordinator",
        ...node("coordinator", [
          "--nats",
          this.hubUrl,
          "--name",
          name,
          ...(options.kubeconfig ? ["--kubeconfig", options.kubeconfig] : []),
        ]),
        logFile: this.logFile(name),
        env,
        ...(restartDelayMs !== undefined ? { restartDelayMs } : {}),
      });
    }
    const { units } = partitionOf(this.topology);
    for (const n of this.topology.nodes) {
      const domain = domainOf(n);
      const name = `node-${n.name}`;
      const host = this.hostOf(n.name);
      const args = nodeActorArgs(n, {
        natsUrl: this.natsUrlFor(domain),
        ...(host ? { tunnel: { netns: host.ns, driver: options.tunnelDriver ?? "strongswan" } } : {}),
        ...(pkiDirs && options.demoTargets !== false
          ? {
              demoTarget: {
                ports: this.nodePorts(n.name),
                tlsDir: pkiDirs.get(domain)!,
                ...(options.demoTargetIdleMs !== undefined ? { idleTimeoutMs: options.demoTargetIdleMs } : {}),
              },
            }
          : {}),
      });
      this.add({
        name,
        kind: "node",
        ...node("node-actor", args, domain),
        logFile: this.logFile(name),
        env,
        ...(restartDelayMs !== undefined ? { restartDelayMs } : {}),
      });
      this.nodeActors.set(name, { name, node: n.name, domain });
    }
    for (const unit of units.values()) {
      for (const c of unit.candidates) {
        const facts = this.topology.nodes.find((n) => n.name === c)!;
        const domain = domainOf(facts);
        const name = `gateway-${c}`;
        const host = this.hostOf(c);
        const listen = this.proxyListen(c);
        const args = gatewayActorArgs(c, domain, unit.name, {
          natsUrl: this.natsUrlFor(domain),
          ...(pkiDirs
            ? {
                proxy: {
                  pkiDir: pkiDirs.get(domain)!,
                  transport: options.proxyTransport ?? "tls",
                  ...(options.proxyResponseTimeoutMs !== undefined
                    ? { responseTimeoutMs: options.proxyResponseTimeoutMs }
                    : {}),
                },
              }
            : {}),
          ...(host && pskFile
            ? {
                tunnel: {
                  driver: options.tunnelDriver ?? "strongswan",
                  pskFile,
                  stateDir: join(this.runDir, "tunnel", c),
                  netns: host.ns,
                },
              }
            : {}),
          ...(listen ? { listen } : {}),
        });
        this.add({
          name,
          kind: "gateway",
          ...node("gateway-actor", args, domain),
          logFile: this.logFile(name),
          env,
          ...(restartDelayMs !== undefined ? { restartDelayMs } : {}),
        });
        this.gatewayActors.set(name, { name, node: c, domain, gateway: unit.name });
      }
    }
    // Coordinators first: on a small machine, 30 processes starting at once compete for the CPU, and nothing
    // can register before a coordinator holds the lease.
    const ofKind = (kind: ProcSpec["kind"]) => [...this.procs.values()].filter((p) => p.spec.kind === kind);
    const startAll = (procs: ManagedProc[]) => {
      for (const p of procs) p.start();
      writePidFile(this.pidFile, this.procs.values());
    };
    startAll(ofKind("coordinator"));
    await this.readiness.waitCoordinator(30_000);
    const gateways = ofKind("gateway");
    for (let i = 0; i < gateways.length; i += START_BATCH) {
      const batch = gateways.slice(i, i + START_BATCH);
      startAll(batch);
      await this.readiness
        .waitHeartbeats(
          batch.map((p) => this.gatewayActors.get(p.spec.name)!),
          20_000,
        )
        .catch((err) => this.progress(`      ${describeError(err)}; starting the next ones anyway`));
    }
    this.progress(`[4/5] coordinator active; started ${gateways.length} gateway candidates, ${START_BATCH} at a time`);
    const nodes = ofKind("node");
    for (let i = 0; i < nodes.length; i += START_BATCH) {
      const batch = nodes.slice(i, i + START_BATCH);
      startAll(batch);
      const names = batch.map((p) => this.nodeActors.get(p.spec.name)!.node);
      await this.readiness
        .waitNodesReady(names, 20_000)
        .catch((err) => this.progress(`      ${describeError(err)}; starting the next ones anyway`));
    }
    this.progress(`      started ${nodes.length} node actors, ${START_BATCH} at a time`);

    await this.readiness.waitElected(60_000);
    this.progress(`[5/5] every domain has its active gateways; logs in ${join(this.runDir, "logs")}`);
  }

  private async setupNetns(): Promise<void> {
    const reaped = await reapStaleNetns();
    if (reaped.length > 0)
      this.progress(
        `      removed the network namespaces of ${reaped.length} earlier run(s) that did not clean up: ${reaped.join(", ")}`,
      );
    const { units } = partitionOf(this.topology);
    const candidates = new Set([...units.values()].flatMap((u) => u.candidates));
    const domains = this.allDomains().map((domain) => ({
      domain,
      nodes: this.topology.nodes
        .filter((n) => domainOf(n) === domain)
        .map((n) => ({
          name: n.name,
          internalIP: n.internalIP,
          candidate: candidates.has(n.name),
          ...(n.podCIDR ? { podCIDR: n.podCIDR } : {}),
        })),
    }));
    const tunnel = this.options.tunnel === true;
    const plan = planNetns({ prefix: newNetnsPrefix(), subnetIndex: await findFreeSubnetIndex(), domains, tunnel });
    await createNetns(plan);
    this.netns = plan;
    this.progress(
      `      ${domains.length} network namespaces (${plan.domains.map((d) => d.ns).join(", ")}) on underlay ${plan.subnet}`,
    );
    if (tunnel)
      this.progress(
        `      tunnel mode: a host and a pod namespace per node (${plan.prefix}.<node>, ${plan.prefix}:<node>)`,
      );
  }

  /** PKI, per-domain secrets and the cloud listeners; returns each domain's PKI directory. */
  private async setupProxy(): Promise<Map<string, string>> {
    const root = join(this.runDir, "pki");
    const pki = await ensurePki(root);
    const secret = readFileSync(pki.secret, "utf8").trim();
    const hostOf = (node: string) => {
      const d = this.netns?.domains.find((x) => node in x.underlayIPs);
      return d ? d.underlayIPs[node]! : "127.0.0.1";
    };
    this.proxyPlan = await planProxy(this.topology, hostOf, this.netns ? null : freePorts);
    const cloudDomains = new Set<string>();
    for (const c of this.proxyPlan.cloud.keys())
      cloudDomains.add(domainOf(this.topology.nodes.find((n) => n.name === c)!));
    const dirs = new Map<string, string>();
    for (const d of this.allDomains())
      dirs.set(
        d,
        writeDomainPki(pki, secret, root, d, cloudDomains.has(d), (f) => readFileSync(f)),
      );
    return dirs;
  }

  /** The node ports a node's demo target serves: its Gateway's proxy ports (Raven's defaults when solo). */
  private nodePorts(node: string): number[] {
    const { units, unitOfNode } = partitionOf(this.topology);
    const unit = units.get(unitOfNode.get(node) ?? "");
    const gw = this.topology.gateways.find((g) => unit && gatewayKey(g.metadata.name) === unit.key);
    return proxyPortsOf(
      gw?.spec ?? { proxyConfig: { Replicas: 1 }, tunnelConfig: { Replicas: 1 }, endpoints: [], exposeType: "" },
    );
  }

  private add(spec: ProcSpec): void {
    const nice = spec.kind === "node" ? undefined : CONTROL_NICE;
    this.procs.set(
      spec.name,
      new ManagedProc(nice === undefined ? spec : { ...spec, nice }, (e) => this.options.onProcEvent?.(e)),
    );
  }

  private logFile(name: string): string {
    return join(this.runDir, "logs", `${name}.log`);
  }

  private seedGateways(): Promise<void> {
    const { kubeconfig, kubeAdminConfig, tunnel } = this.options;
    return seedFleet({
      connect: () => this.connect(),
      topology: this.topology,
      gateways: (this.proxyPlan?.topology ?? this.topology).gateways,
      hostOf: tunnel ? (node: string) => this.hostOf(node) : null,
      ...(kubeconfig ? { kubeconfig: kubeAdminConfig ?? kubeconfig } : {}),
      progress: (line) => this.progress(line),
    });
  }

  connect(): Promise<NatsConnection> {
    return connectOnce(this.hubUrl, "raven-fleet", 5_000);
  }

  /** Asks the active coordinator for the fleet status (null when none answers in time). */
  status(nc: NatsConnection, timeoutMs = 1_000): Promise<StatusReply | null> {
    return this.readiness.status(nc, timeoutMs);
  }

  /** Resolves when every unit with candidates has every wanted replica active and every node is ready. */
  waitElected(timeoutMs: number): Promise<StatusReply> {
    return this.readiness.waitElected(timeoutMs);
  }

  kill(name: string, signal: NodeJS.Signals = "SIGKILL"): number | undefined {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no process named ${name}`);
    return p.kill(signal);
  }

  async stop(): Promise<void> {
    // Gateway and node actors first (an active gateway drains while the coordinators can still hand over),
    // then the coordinators, then the leaves, then the hub.
    const tiers: ProcSpec["kind"][][] = [["gateway", "node"], ["coordinator"], ["leaf"], ["hub"]];
    for (const kinds of tiers) {
      await Promise.all(
        [...this.procs.values()]
          .filter((p) => kinds.includes(p.spec.kind))
          .map((p) => p.stop(6_000).catch((err) => this.progress(`stop ${p.spec.name}: ${describeError(err)}`))),
      );
    }
    writePidFile(this.pidFile, []);
    if (this.netns) {
      await destroyNetns(this.netns.prefix);
      this.netns = null;
    }
  }
}
