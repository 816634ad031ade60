// bench:tunnel's reference datapath: tunnel mode's path from edge-a to edge-b built by hand, with no Raven
// process running, so that the benchmark can tell what Raven costs on top of the kernel, VXLAN and charon.
//  - The machines are the fleet's own: services/fleet's namespace plan for the same topology (a host and a
//    pod namespace per node, veths, the domain LAN bridges, the underlay bridge), under a prefix of its own.
//  - On them, what Raven's processes would add, done with iproute2 and swanctl instead: on every node of
//    edge-a and edge-b the VXLAN device, pinned FDB entries and neighbours, routes and forwarding that
//    computeRoutes gives (the route agent's desired state, applied by tunnel-lib.ts handbuiltRouteCommands);
//    on the first candidate of each domain (a-gw-1, b-gw-1) the lo anchors and one charon configured as the
//    strongSwan driver configures it — renderStrongswanConf, one charon per gateway namespace in its own mount
//    namespace with a private tmpfs on /run, its own STRONGSWAN_CONF and vici socket — loaded through
//    swanctl with connectionMessage's proposals and traffic selectors and a PSK, initiated by the side with
//    the lower address. The cloud domain gets namespaces (the plan is the fleet's) but no datapath.
// Guarantees: stop() undoes everything build() did, also after a build that failed half way: each charon is
// stopped by its PID (TERM, then KILL), then every namespace and link of the prefix goes. A charon also dies
// with this process (setpriv --pdeathsig), and the namespaces of a run that died are reaped by the next
// fleet (their marker names a dead PID). stop() is idempotent.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { domainOf } from "../shared/domains";
import { partitionOf } from "../shared/topology";
import {
  createNetns,
  destroyNetns,
  findFreeSubnetIndex,
  newNetnsPrefix,
  planNetns,
  type NetnsPlan,
  type NodeHost,
} from "../services/fleet/netns";
import {
  anchorOf,
  connectionMessage,
  DEFAULT_CHARON,
  ensurePskFile,
  ikeSasOf,
  initiates,
  kernelHasEsp,
  readPsk,
  renderStrongswanConf,
  sharedKeyMessage,
  TUNNEL_DRIVERS,
  daemonArgv,
  viciCall,
  vpnOverheadFor,
  type VpnPeer,
} from "../lib/vpn";
import { computeRoutes } from "../lib/vxlan";
import { peerNameOf } from "../lib/tunnel";
import { PathError } from "./proxy-lib";
import { benchTopology, DOMAINS, waitUntil } from "./tunnel-fleet";
import { handbuiltRouteCommands, swanctlConf } from "./tunnel-lib";

const UNDERLAY_MTU = 1500; // the actors' --tunnel-underlay-mtu default, which the fleet keeps
const CHARON_STOP_GRACE_MS = 3_000;
const INITIATE_TIMEOUT_S = 10;

/** The hand-built path's ends (the tunnel path's: pod of a-node-1 to pod of b-node-1) and its gateways. */
export type HandbuiltEnds = Readonly<{ client: NodeHost; sink: NodeHost; gwA: NodeHost; gwB: NodeHost }>;

type Charon = { node: string; child: ChildProcess; exited: Promise<void> };

/** Runs argv; resolves with stdout, or rejects with a PathError carrying stderr (minus swanctl's plugin noise). */
function run(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: 30_000 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      // Not err itself as the cause: its message repeats all of stderr, plugin noise included.
      const why =
        String(stderr)
          .split("\n")
          .filter((l) => l && !/^plugin '.*': failed to load/.test(l))
          .join(" | ") || err.message;
      reject(new PathError(`${argv.join(" ")} failed (${err.signal ?? `exit ${String(err.code)}`}): ${why}`));
    });
  });
}

export class HandbuiltTunnel {
  private plan: NetnsPlan | null = null;
  private readonly charons: Charon[] = [];
  private ends: HandbuiltEnds | null = null;
  private stopped: Promise<void> | null = null;

  constructor(
    /** Directory for the charons' configuration, sockets and logs (kept with the run's when it fails). */
    readonly dir: string,
    private readonly progress: (line: string) => void,
  ) {}

  /** Builds the datapath and brings the SA between a-gw-1 and b-gw-1 up. */
  async build(): Promise<void> {
    const topology = benchTopology();
    const candidates = new Set([...partitionOf(topology).units.values()].flatMap((u) => u.candidates));
    const domains = DOMAINS.map((domain) => ({
      domain,
      nodes: topology.nodes
        .filter((n) => domainOf(n) === domain)
        .map((n) => ({
          name: n.name,
          internalIP: n.internalIP,
          candidate: candidates.has(n.name),
          ...(n.podCIDR ? { podCIDR: n.podCIDR } : {}),
        })),
    }));
    const plan = planNetns({
      prefix: newNetnsPrefix(),
      subnetIndex: await findFreeSubnetIndex(),
      domains,
      tunnel: true,
    });
    this.plan = plan;
    await createNetns(plan);
    this.progress(
      `namespaces ${plan.prefix}-*, ${plan.prefix}.<node>, ${plan.prefix}:<node> on underlay ${plan.subnet}`,
    );

    const edges = plan.domains.filter((d) => d.domain === "edge-a" || d.domain === "edge-b");
    const podCidrs = (d: (typeof plan.domains)[number]) => d.hosts.flatMap((h) => (h.podCidr ? [h.podCidr] : []));
    const overhead = vpnOverheadFor("strongswan", UNDERLAY_MTU);
    const gateways: NodeHost[] = [];
    for (const d of edges) {
      const gw = d.hosts.find((h) => h.underlayIP !== undefined)!;
      gateways.push(gw);
      const remote = plan.domains.filter((o) => o !== d).flatMap(podCidrs);
      const localNodes = d.hosts.map((h) => ({ lanIP: h.lanIP, podCidrs: h.podCidr ? [h.podCidr] : [] }));
      for (const h of d.hosts) {
        const isGw = h === gw;
        const desired = computeRoutes({
          role: isGw ? "gateway" : "node",
          localIP: h.lanIP,
          gatewayIP: gw.lanIP,
          localNodes,
          remotePodCidrs: remote,
          underlayMtu: UNDERLAY_MTU,
          vpnOverheadBytes: overhead,
          ...(isGw ? { tunnelDev: TUNNEL_DRIVERS.strongswan.tunnelDev } : {}),
        });
        for (const argv of handbuiltRouteCommands(h.ns, desired, isGw ? podCidrs(d).map(anchorOf) : []))
          await run(argv);
      }
    }
    const [gwA, gwB] = gateways as [NodeHost, NodeHost];
    const host = (node: string) => edges.flatMap((d) => d.hosts).find((h) => h.node === node);
    const [client, sink] = [host("a-node-1"), host("b-node-1")];
    if (!client?.podNs || !sink?.podNs)
      throw new PathError("the hand-built plan has no pod namespaces for a-node-1 and b-node-1");
    this.ends = { client, sink, gwA, gwB };
    this.progress(
      `VXLAN, routes and forwarding on ${edges.flatMap((d) => d.hosts).length} nodes; gateways ${gwA.node}, ${gwB.node}`,
    );

    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const psk = readPsk(ensurePskFile(join(this.dir, "tunnel.psk")));
    const peer = (self: NodeHost, other: NodeHost, otherDomain: string): VpnPeer => ({
      name: peerNameOf(otherDomain),
      localAddr: self.underlayIP!,
      remoteAddr: other.underlayIP!,
      localSubnets: podCidrs(edges.find((d) => d.hosts.includes(self))!),
      remoteSubnets: podCidrs(edges.find((d) => d.hosts.includes(other))!),
      remoteNode: other.node,
    });
    const peers = [peer(gwA, gwB, "edge-b"), peer(gwB, gwA, "edge-a")] as const;
    for (const [i, gw] of [gwA, gwB].entries()) {
      const p = peers[i]!;
      const stateDir = join(this.dir, gw.node);
      await this.startCharon(gw, stateDir);
      const conf = join(stateDir, "swanctl.conf");
      writeFileSync(conf, swanctlConf([connectionMessage(p)], [sharedKeyMessage(p, psk)]), { mode: 0o600 });
      await run(["swanctl", "--load-all", "--noprompt", "--file", conf, "--uri", this.uri(gw.node)]);
    }
    const i = initiates(peers[0]) ? 0 : 1;
    const initiator = [gwA, gwB][i]!;
    await run([
      "swanctl",
      "--initiate",
      "--ike",
      peers[i]!.name,
      "--child",
      peers[i]!.name,
      "--timeout",
      String(INITIATE_TIMEOUT_S),
      "--uri",
      this.uri(initiator.node),
    ]);
    await this.saBytesOut(); // throws unless the SA is up
    this.progress(
      `SA ${gwA.node} <-> ${gwB.node} up (initiated by ${initiator.node}); strongSwan config and logs in ${this.dir}`,
    );
  }

  /** Where the path starts and ends; throws before build() has got that far. */
  get endpoints(): HandbuiltEnds {
    if (!this.ends) throw new PathError("the hand-built datapath is not built");
    return this.ends;
  }

  /** The bytes out of a-gw-1's CHILD_SA to edge-b, read from its charon. */
  async saBytesOut(): Promise<number> {
    const gw = this.endpoints.gwA.node;
    const name = peerNameOf("edge-b");
    const reply = await viciCall(
      join(this.dir, gw, "charon.vici"),
      "list-sas",
      { noblock: "yes" },
      { stream: "list-sa", timeoutMs: 5_000 },
    );
    const children = ikeSasOf(reply.events)
      .filter((s) => s.name === name && s.state === "ESTABLISHED")
      .flatMap((s) => s.children.filter((c) => c.name === name && c.state === "INSTALLED"));
    if (children.length === 0) throw new PathError(`${gw}'s hand-built charon has no installed CHILD_SA to edge-b`);
    return children.reduce((sum, c) => sum + c.bytesOut, 0);
  }

  stop(): Promise<void> {
    return (this.stopped ??= this.teardown());
  }

  private async teardown(): Promise<void> {
    for (const c of this.charons) {
      if (c.child.exitCode !== null || c.child.signalCode !== null) continue;
      c.child.kill("SIGTERM");
      const grace = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), CHARON_STOP_GRACE_MS).unref());
      if ((await Promise.race([c.exited, grace])) === "timeout") {
        c.child.kill("SIGKILL");
        await c.exited;
      }
    }
    if (this.plan) await destroyNetns(this.plan.prefix);
  }

  private uri(node: string): string {
    return `unix://${join(this.dir, node, "charon.vici")}`;
  }

  /** One charon in `gw`'s namespace, started as lib/vpn/strongswan.ts starts it. */
  private async startCharon(gw: NodeHost, stateDir: string): Promise<void> {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const conf = join(stateDir, "strongswan.conf");
    const vici = join(stateDir, "charon.vici");
    writeFileSync(
      conf,
      renderStrongswanConf({
        viciSocket: vici,
        logFile: join(stateDir, "charon.log"),
        libipsec: !kernelHasEsp(),
        ikePort: 500,
        natPort: 4500,
      }),
      { mode: 0o600 },
    );
    // Started as the driver starts it (one exec chain, a private /run, so child.pid is charon's).
    const argv = daemonArgv({
      netns: gw.ns,
      deathSignal: "TERM",
      run: { size: "16m", name: "raven-charon" },
      command: DEFAULT_CHARON,
    });
    const outFd = openSync(join(stateDir, "charon.stdout"), "a", 0o600);
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ["ignore", outFd, outFd],
      env: { ...process.env, STRONGSWAN_CONF: conf },
    });
    closeSync(outFd);
    const exited = new Promise<void>((r) => {
      child.once("exit", () => r());
      child.once("error", () => r());
    });
    this.charons.push({ node: gw.node, child, exited });
    await waitUntil(
      `${gw.node}'s hand-built charon to answer on ${vici}`,
      10_000,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new PathError(
            `${gw.node}'s hand-built charon exited (${child.signalCode ?? `code ${child.exitCode}`}); see ${stateDir}`,
          );
        return run(["swanctl", "--stats", "--uri", `unix://${vici}`]).then(
          () => true,
          () => false,
        );
      },
      50,
    );
  }
}
