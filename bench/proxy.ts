// bench:proxy — data-path figures of three ways to reach a port behind an edge, in one run, against the same
// in-process targets on loopback: (a) direct TCP, (b) an OpenSSH reverse tunnel (`ssh -R` through a private
// sshd this benchmark starts and stops), (c) the Raven proxy (HTTP CONNECT node:port, then raw bytes), and a
// two floors with the same hops and encryption as the Raven path and none of Raven's work: (d) two bare Node
// relays in series with TLS between them (bench/relay.ts), what any Node.js TLS relay costs here — the measured
// reason the gateways relay natively; (e) the same two relays handing their connections to the gateways' native
// relay (native/, sealed frames under TLS-exported keys), what Raven's data path costs by itself.
// Per path: bulk MB/s (1 MB = 1e6 bytes) into a sink that confirms the byte count, p50/p99 of 64-byte round
// trips on one kept-alive connection, and connections/s (dial, one round trip, close).
// The ssh path uses OpenSSH's default cipher unless --ssh-cipher names one. Figures on stdout as they come,
// progress on stderr.
// Last lines: proxy mbps=X ssh_mbps=Y ratio_vs_ssh=R rtt_p50_us=A ssh_rtt_p50_us=B conn_per_s=C
// (X, A, C of the Raven path; "nan" when it was not measured), then
// proxy_floor ratio_mbps=A ratio_rtt_p99=B ratio_conn_per_s=C: the Raven path over the native two-hop floor
// (e) of the same run. Goals: A >= 0.9, B <= 1.5, C >= 1.0; against ssh, rtt p99 <= 1.0x and conn/s >= 1.0x.
import { parseFlags } from "../shared/args";
import { ConfigError } from "../shared/errors";
import { integerFlag, once, parseBytes, secondsFlag } from "./flags";
import { runMain } from "../shared/process";
import {
  GIB,
  consoleReporter,
  directDialers,
  fmt,
  formatBytes,
  formatPathResult,
  formatRatios,
  measurePath,
  notMeasured,
  ratio,
  connectViaDialer,
  startRelayProcess,
  startTargetsProcess,
  tcpDialer,
  type TargetsProcess,
  type MeasureOptions,
  type PathDialers,
  type PathResult,
} from "./proxy-lib";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTopology, type Topology } from "../shared/topology";
import { Fleet } from "../services/fleet/fleet";
import { nsExec } from "../services/fleet/netns";
import { startUiServer, type UiServer } from "../services/ui/server";
import { connectDaemon, type NatsConnection } from "../shared/nats";
import { reverseTunnel, startSshd, tunnelCipher } from "./sshd";
import { ensurePki } from "../shared/pki";

// The Raven path: a fleet of its own (cloud + one edge domain, two candidates each), in network namespaces
// when run as root (the edge's InternalIP exists only inside its namespace) or on loopback otherwise; the
// bench's targets run as a process on the edge node's InternalIP, and every connection goes
// client -> CONNECT on the active cloud gateway -> TLS channel dialed out by the active edge gateway -> target.
const SINK_PORT = 10255;
const ECHO_PORT = 9445;

function benchTopology(loopback: boolean): Topology {
  const node = (name: string, pool: string, ip: string, gw: string) => ({
    name,
    labels: { "apps.openyurt.io/nodepool": pool, "raven.openyurt.io/gateway": gw },
    internalIP: loopback ? ip.replace(/^10\.0\./, "127.0.") : ip,
  });
  const gateway = (name: string, nodes: string[], exposeType: string) => ({
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
    name: "bench-proxy",
    nodes: [
      node("cloud-gw-1", "cloud", "10.0.1.11", "gw-cloud"),
      node("cloud-gw-2", "cloud", "10.0.1.12", "gw-cloud"),
      node("edge-gw-1", "edge", "10.0.2.11", "gw-edge"),
      node("edge-gw-2", "edge", "10.0.2.12", "gw-edge"),
      node("edge-node-1", "edge", "10.0.2.13", "gw-edge"),
    ],
    gateways: [
      gateway("gw-cloud", ["cloud-gw-1", "cloud-gw-2"], "PublicIP"),
      gateway("gw-edge", ["edge-gw-1", "edge-gw-2"], ""),
    ],
  });
}

/** Path (d): client -> relay (TCP in, TLS out) -> relay (TLS in, TCP out) -> targets, all on loopback; with
 * `native`, each relay hands its connections to the gateways' native relay, as Raven's gateways do. */
async function measureFloor(targets: TargetsProcess, opts: MeasureOptions, native: boolean): Promise<PathResult> {
  const label = native ? "native-relay" : "node-tls-relay";
  const pkiDir = mkdtempSync(join(tmpdir(), "raven-bench-relay-"));
  const relays: TargetsProcess[] = [];
  try {
    await ensurePki(pkiDir);
    const inner = await startRelayProcess(targets, { in: "tls", out: "tcp", native }, pkiDir);
    relays.push(inner);
    const outer = await startRelayProcess(inner, { in: "tcp", out: "tls", native }, pkiDir);
    relays.push(outer);
    consoleReporter.progress(
      `${label}: 127.0.0.1 relay ${outer.sinkPort}/${outer.echoPort} (TLS out) -> relay ${inner.sinkPort}/${inner.echoPort} (TLS in) -> targets`,
    );
    return await measurePath(label, directDialers(outer), opts);
  } finally {
    for (const r of relays.reverse()) await r.stop();
    rmSync(pkiDir, { recursive: true, force: true });
  }
}

let noNetns = false;
let withViewer = false;

async function ravenPath(transport: "tls" | "tcp"): Promise<{ dial: PathDialers; stop(): Promise<void> } | null> {
  const netns = process.getuid?.() === 0 && !noNetns;
  const topology = benchTopology(!netns);
  const target = topology.nodes.find((n) => n.name === "edge-node-1")!;
  const runDir = mkdtempSync(join(tmpdir(), "raven-bench-proxy-"));
  const fleet = new Fleet(topology, {
    runDir,
    hubPort: 0,
    proxy: true,
    netns,
    demoTargets: false,
    proxyTransport: transport,
    logLevel: "warn",
    progress: (l) => consoleReporter.progress(`raven: ${l.trim()}`),
  });
  let targets: TargetsProcess | null = null;
  let viewer: { ui: UiServer; nc: NatsConnection } | null = null;
  const stop = async () => {
    await viewer?.ui.close();
    await viewer?.nc.close();
    await targets?.stop();
    await fleet.stop();
    rmSync(runDir, { recursive: true, force: true });
  };
  try {
    await fleet.start();
    if (withViewer) {
      // A statechart viewer attached to this fleet: every actor process publishes its inspection events.
      const nc = await connectDaemon(fleet.hubUrl, "bench-viewer");
      viewer = { nc, ui: await startUiServer({ nc, port: 0, host: "127.0.0.1" }) };
      consoleReporter.progress(`raven: statechart viewer attached (${viewer.ui.url})`);
    }
    const ns = fleet.namespaceOf("edge");
    targets = await startTargetsProcess({
      host: target.internalIP,
      sinkPort: SINK_PORT,
      echoPort: ECHO_PORT,
      ...(ns ? { prefix: nsExec(ns, []) } : {}),
    });
    const nc = await fleet.connect();
    const st = await fleet.status(nc);
    await nc.close();
    const cloud = st?.domains.find((d) => d.gateway === "gw-cloud")?.active.find((a) => a.type === "proxy")?.nodeName;
    const door = cloud ? fleet.proxyListen(cloud) : undefined;
    if (!door) throw new Error("the bench fleet has no active cloud proxy gateway");
    consoleReporter.progress(
      `raven: ${netns ? "network namespaces" : "loopback"}; front door ${door.host}:${door.frontPort} on ${cloud}; target ${target.name} (${target.internalIP})`,
    );
    const dial = {
      sink: connectViaDialer(door.host, door.frontPort, `${target.name}:${SINK_PORT}`),
      echo: connectViaDialer(door.host, door.frontPort, `${target.name}:${ECHO_PORT}`),
    };
    // Elected is not yet connected: the edge gateway dials its channels out once it sees the cloud's record.
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        (await dial.echo()).destroy();
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { dial, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A goal's verdict for the progress output; a ratio that could not be measured is "not measured". */
function goal(what: string, met: boolean, value: number): string {
  return `goal ${what}: ${Number.isNaN(value) ? "not measured" : `${met ? "met" : "missed"} (${fmt(value, 2)}x)`}`;
}

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "npm run bench:proxy -- [options]",
    "Throughput, RTT and connection rate: direct TCP, ssh -R, and the Raven proxy.",
    {
      bytes: {
        type: "string",
        help: "bulk bytes per path, >= 1GiB unless --quick (default: 1GiB; 64MiB with --quick)",
      },
      "rtt-samples": { type: "string", help: "64-byte round trips per path (default: 20000; 2000 with --quick)" },
      "rtt-warmup": { type: "string", help: "round trips before the counted ones (default: 1000; 200 with --quick)" },
      "conn-seconds": {
        type: "string",
        help: "seconds of connection-rate measurement per path (default: 3; 1 with --quick)",
      },
      concurrency: {
        type: "string",
        default: "8",
        help: "connections in flight during the connection-rate measurement",
      },
      "ssh-cipher": {
        type: "string",
        help: "ssh -c for the tunnels, e.g. aes128-gcm@openssh.com (default: OpenSSH's own choice)",
      },
      quick: { type: "boolean", default: false, help: "smoke test: small defaults, allows --bytes below 1GiB" },
      "with-viewer": {
        type: "boolean",
        default: false,
        help: "attach a statechart viewer (raven ui) to the Raven path's fleet while measuring",
      },
      "no-netns": { type: "boolean", default: false, help: "run the Raven path's fleet on loopback even as root" },
      "skip-tcp": {
        type: "boolean",
        default: false,
        help: "do not measure the Raven path with plain-TCP channels (only the default, TLS)",
      },
      "skip-floor": {
        type: "boolean",
        default: false,
        help: "do not measure the floor paths (two bare relays with TLS between them: Node's, and the native relay)",
      },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const quick = flags.quick === true;
  noNetns = flags["no-netns"] === true;
  withViewer = flags["with-viewer"] === true;
  const bulkBytes = parseBytes(flags.bytes ?? (quick ? "64MiB" : "1GiB"), "--bytes");
  if (bulkBytes < GIB && !quick)
    throw new ConfigError(
      "--bytes",
      `must be at least 1GiB for a real run (got ${formatBytes(bulkBytes)}); pass --quick for a smoke test`,
    );
  const opts: MeasureOptions = {
    bulkBytes,
    rttSamples: integerFlag(flags["rtt-samples"] ?? (quick ? "2000" : "20000"), "--rtt-samples", 1),
    rttWarmup: integerFlag(flags["rtt-warmup"] ?? (quick ? "200" : "1000"), "--rtt-warmup", 0),
    connMs: secondsFlag(flags["conn-seconds"] ?? (quick ? "1" : "3"), "--conn-seconds") * 1000,
    concurrency: integerFlag(flags.concurrency!, "--concurrency", 1),
  };

  const tunnelOpts = flags["ssh-cipher"] ? { cipher: flags["ssh-cipher"] } : {};
  const cipher = tunnelCipher(tunnelOpts); // a cipher ssh does not know fails here, before any measurement

  // Everything started here is stopped by these, newest first, once: at the end, on error, on SIGINT/SIGTERM.
  const stoppers: Array<() => Promise<void>> = [];
  const stopAll = once(async () => {
    for (const stop of stoppers.reverse())
      await stop().catch((err) => consoleReporter.progress(`cleanup: ${(err as Error).message}`));
  });
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)
    process.once(signal, () => void stopAll().finally(() => process.exit(code)));

  try {
    // Targets in a process of their own for every path, as the Raven path's must be (inside the edge domain).
    const targets = await startTargetsProcess();
    stoppers.push(once(() => targets.stop()));
    consoleReporter.progress(
      `targets on ${targets.host}: sink ${targets.sinkPort}, echo ${targets.echoPort}; bulk ${formatBytes(opts.bulkBytes)}, ${opts.rttSamples} round trips, ${opts.connMs / 1000} s of connections x ${opts.concurrency}`,
    );

    const direct = await measurePath("direct", directDialers(targets), opts);

    consoleReporter.figure(`ssh: cipher ${cipher}${tunnelOpts.cipher ? "" : " (OpenSSH's default)"}`);
    consoleReporter.progress("ssh: starting a private sshd on 127.0.0.1 and two ssh -R tunnels (sink, echo)");
    const sshd = await startSshd();
    const stopSsh = once(() => sshd.stop());
    stoppers.push(stopSsh);
    const [sinkTunnel, echoTunnel] = [
      await reverseTunnel(sshd, targets.sinkPort, tunnelOpts),
      await reverseTunnel(sshd, targets.echoPort, tunnelOpts),
    ];
    const ssh = await measurePath(
      "ssh",
      { sink: tcpDialer("127.0.0.1", sinkTunnel.port), echo: tcpDialer("127.0.0.1", echoTunnel.port) },
      opts,
    );
    await stopSsh(); // its tunnels too; nothing of ssh competes for the CPU while the next path runs

    const floor = flags["skip-floor"] ? notMeasured("node-tls-relay") : await measureFloor(targets, opts, false);
    const nativeFloor = flags["skip-floor"] ? notMeasured("native-relay") : await measureFloor(targets, opts, true);

    // The default channel transport (TLS) is what the last line reports; plain TCP between the gateways is
    // measured too, for underlays that are already private or encrypted.
    const measureRaven = async (transport: "tls" | "tcp", label: string): Promise<PathResult> => {
      const path = await ravenPath(transport);
      if (!path) return notMeasured(label);
      const stopRaven = once(() => path.stop());
      stoppers.push(stopRaven);
      const result = await measurePath(label, path.dial, opts);
      await stopRaven();
      return result;
    };
    const raven = await measureRaven("tls", "raven");
    const ravenTcp = flags["skip-tcp"] ? notMeasured("raven-tcp") : await measureRaven("tcp", "raven-tcp");

    for (const r of [direct, ssh, floor, nativeFloor, raven, ravenTcp]) consoleReporter.figure(formatPathResult(r));
    consoleReporter.figure(formatRatios(ravenTcp, ssh));
    consoleReporter.figure(formatRatios(ssh, direct));
    consoleReporter.figure(formatRatios(raven, ssh));
    consoleReporter.figure(formatRatios(raven, direct));
    consoleReporter.figure(formatRatios(floor, ssh));
    consoleReporter.figure(formatRatios(nativeFloor, ssh));
    consoleReporter.figure(formatRatios(raven, nativeFloor));
    consoleReporter.figure(
      `proxy mbps=${fmt(raven.bulkMBps, 1)} ssh_mbps=${fmt(ssh.bulkMBps, 1)} ratio_vs_ssh=${fmt(ratio(raven.bulkMBps, ssh.bulkMBps), 2)}` +
        ` rtt_p50_us=${fmt(raven.rtt.p50_us)} ssh_rtt_p50_us=${fmt(ssh.rtt.p50_us)} conn_per_s=${fmt(raven.connPerS)}`,
    );
    const vsFloor = {
      mbps: ratio(raven.bulkMBps, nativeFloor.bulkMBps),
      rttP99: ratio(raven.rtt.p99_us, nativeFloor.rtt.p99_us),
      connPerS: ratio(raven.connPerS, nativeFloor.connPerS),
    };
    consoleReporter.progress(
      [
        goal("bulk >= 0.9x the native floor", vsFloor.mbps >= 0.9, vsFloor.mbps),
        goal("rtt p99 <= 1.5x the native floor", vsFloor.rttP99 <= 1.5, vsFloor.rttP99),
        goal("conn/s >= 1.0x the native floor", vsFloor.connPerS >= 1, vsFloor.connPerS),
        goal("rtt p99 <= 1.0x ssh", raven.rtt.p99_us <= ssh.rtt.p99_us, ratio(raven.rtt.p99_us, ssh.rtt.p99_us)),
        goal("conn/s >= 1.0x ssh", raven.connPerS >= ssh.connPerS, ratio(raven.connPerS, ssh.connPerS)),
      ].join("\n"),
    );
    consoleReporter.figure(
      `proxy_floor ratio_mbps=${fmt(vsFloor.mbps, 2)} ratio_rtt_p99=${fmt(vsFloor.rttP99, 2)} ratio_conn_per_s=${fmt(vsFloor.connPerS, 2)}`,
    );
  } finally {
    await stopAll();
  }
});
