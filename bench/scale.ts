// bench:scale — one coordinator process supervises 10,000 simulated nodes in 1,000 domains, two gateway
// candidates each. A load generator in another process registers every node and heartbeats (nodes at 1 Hz,
// candidates at the rate and with the detection settings bench:failover uses). Measures the time until every
// domain has its active gateways (cold election), then the coordinator's steady-state CPU and peak RSS.
// Last line: scale nodes=N domains=D coordinator_cpu_pct=C rss_mb=M cold_elect_ms=E
//
// --kube: the Nodes, Gateways and raven-cfg live in the Kubernetes API double instead of KV, and the
// coordinator runs with --kubeconfig: it lists them, writes the records, elects and mirrors every Gateway's
// status back. After the steady window the load generator forces failovers (--failovers-per-s, default 10)
// for --failover-s seconds; the double counts the status patches. Last line:
// kube_scale nodes=N gateways=G sync_ms=S rss_mb=M status_patches_per_s=P
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { spawn, type ChildProcess } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFlags } from "../shared/args";
import { ConfigError } from "../shared/errors";
import { defaultTimings } from "../shared/config";
import { parseGatewayManifest } from "../shared/gateway-manifest";
import { applyGateway } from "../shared/gateway-store";
import { connectOnce, openBuckets } from "../shared/nats";
import { runMain } from "../shared/process";
import { subjects, tryDecode } from "../shared/protocol";
import { buildEntrypoints, REPO_ROOT } from "../services/fleet/build";
import { hubConfig } from "../services/fleet/nats-config";
import { freePorts, waitForPort } from "../services/fleet/procs";
import { sampleProcess } from "./proc-stats";
import { startScaleCluster, type KubeWrites } from "./kube-scale";
import { gatewayName, nodeName } from "./sim";

runMain(async () => {
  const parsed = parseFlags(process.argv.slice(2), "npm run bench:scale -- [options]", "Coordinator scale benchmark.", {
    domains: { type: "string", default: "1000", help: "domains (each with 2 gateway candidates)" },
    "nodes-per-domain": { type: "string", default: "10", help: "nodes per domain, including the 2 candidates" },
    "steady-ms": { type: "string", default: "20000", help: "steady-state measurement window" },
    kube: {
      type: "boolean",
      default: false,
      help: "Nodes and Gateways from the Kubernetes API double (informers, status write-back)",
    },
    "failovers-per-s": { type: "string", default: "10", help: "--kube: forced failovers a second" },
    "failover-s": { type: "string", default: "10", help: "--kube: how long failovers are forced" },
  });
  if (!parsed) return;
  const positive = (name: string, min: number) => {
    const v = Number(parsed.flags[name as keyof typeof parsed.flags]);
    if (!Number.isInteger(v) || v < min)
      throw new ConfigError(
        `--${name}`,
        `must be an integer >= ${min}, got ${parsed.flags[name as keyof typeof parsed.flags]}`,
      );
    return v;
  };
  const D = positive("domains", 1);
  const N = positive("nodes-per-domain", 2);
  const steadyMs = positive("steady-ms", 1000);
  const kube = parsed.flags.kube === true;
  const failoversPerS = positive("failovers-per-s", 1);
  const failoverS = positive("failover-s", 1);
  const runDir = mkdtempSync(join(tmpdir(), "raven-scale-"));
  const children: ChildProcess[] = [];
  let coordinatorProc: ChildProcess | null = null;
  const spawnLogged = (name: string, cmd: string, args: string[]) => {
    const fd = openSync(join(runDir, `${name}.log`), "a");
    // Node children get a stdin pipe and RAVEN_EXIT_WITH_PARENT, so they stop if this process dies.
    const child = spawn(cmd, args, {
      stdio: [name === "hub" ? "ignore" : "pipe", name === "loadgen" ? "pipe" : fd, fd],
      env: { ...process.env, RAVEN_EXIT_WITH_PARENT: "1" },
    });
    closeSync(fd);
    children.push(child);
    return child;
  };
  let closeCluster: (() => Promise<void>) | null = null;
  const cleanup = () => {
    void closeCluster?.();
    // With RAVEN_NODE_ARGS (e.g. --cpu-prof) the coordinator gets SIGINT so that it can write its profile.
    for (const c of children) c.kill(process.env.RAVEN_NODE_ARGS && c === coordinatorProc ? "SIGINT" : "SIGKILL");
    if (process.env.RAVEN_KEEP_RUN_DIR) console.log(`run directory kept: ${runDir}`);
    else rmSync(runDir, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  try {
    const [client, leafnode] = await freePorts(2);
    const conf = join(runDir, "hub.conf");
    writeFileSync(
      conf,
      hubConfig({
        configDir: runDir,
        baseConf: join(REPO_ROOT, "nats.conf"),
        ports: { client: client!, leafnode: leafnode! },
        storeDir: join(runDir, "js"),
      }),
    );
    spawnLogged("hub", "nats-server", ["-c", conf]);
    await waitForPort(client!, 10_000);
    const url = `nats://127.0.0.1:${client}`;
    const configFile = join(runDir, "raven.json");
    writeFileSync(configFile, JSON.stringify({ timings: defaultTimings }));
    const nc = await connectOnce(url, "bench-scale");
    let kubeconfig: string | null = null;
    let writes: KubeWrites | null = null;
    let gatewaysInKube: (() => number) | null = null;
    if (kube) {
      console.log(`hub ${url}; Kubernetes API double with ${D * N} Nodes and ${D} Gateways`);
      const k = await startScaleCluster(runDir, D, N);
      closeCluster = () => k.cluster.api.close();
      kubeconfig = k.cluster.kubeconfig;
      writes = k.writes;
      const ref = { group: "raven.openyurt.io", resource: "gateways" };
      gatewaysInKube = () =>
        k.cluster.api.store
          .list(ref)
          .filter(
            (o) => ((o["status"] as { activeEndpoints?: unknown[] } | undefined)?.activeEndpoints?.length ?? 0) > 0,
          ).length;
    } else {
      console.log(`hub ${url}; seeding ${D} Gateway records`);
      const buckets = await openBuckets(nc);
      for (let d = 0; d < D; d += 100) {
        await Promise.all(
          Array.from({ length: Math.min(100, D - d) }, (_, i) =>
            applyGateway(
              buckets.gateways,
              parseGatewayManifest({
                metadata: { name: gatewayName(d + i) },
                spec: {
                  endpoints: [0, 1].flatMap((n) =>
                    ["proxy", "tunnel"].map((type) => ({ nodeName: nodeName(d + i, n), type })),
                  ),
                },
              }),
            ),
          ),
        );
      }
    }
    const elected = new Set<string>();
    const terms = new Map<string, number>();
    let termChanges = 0;
    let allElectedAt = 0;
    const sub = nc.subscribe(subjects.allAssignments(), {
      callback: (_e, m) => {
        const msg = tryDecode(m.data);
        if (msg?.type === "assignment" && msg.body.term > (terms.get(msg.body.gateway) ?? 0)) {
          if (terms.has(msg.body.gateway)) termChanges++;
          terms.set(msg.body.gateway, msg.body.term);
        }
        if (msg?.type === "assignment" && msg.body.active.length > 0 && !elected.has(msg.body.gateway)) {
          elected.add(msg.body.gateway);
          if (elected.size === D) allElectedAt = performance.now();
        }
      },
    });

    // The simulated fleet runs first; then the coordinator cold-starts against it, as after a restart of
    // the whole control plane. cold_elect_ms runs from the coordinator's spawn.
    const loadgen = spawnLogged("loadgen", process.execPath, [
      "--import",
      "tsx",
      join(REPO_ROOT, "bench/loadgen.ts"),
      "--nats",
      url,
      "--domains",
      String(D),
      "--nodes-per-domain",
      String(N),
      "--config",
      configFile,
    ]);
    let registrationsDone = false;
    let heartbeating = false;
    let startedAt = 0;
    loadgen.stdout!.on("data", (b: Buffer) => {
      for (const line of b.toString().split("\n").filter(Boolean)) {
        try {
          const o = JSON.parse(line) as { registered?: number; complete?: boolean; heartbeating?: boolean };
          if (o.heartbeating) heartbeating = true;
          if (o.registered === undefined) continue;
          console.log(
            `  loadgen: ${o.registered} nodes registered${o.complete ? " (all)" : ""} at ${((performance.now() - startedAt) / 1000).toFixed(1)} s`,
          );
          if (o.complete) registrationsDone = true;
        } catch {
          // not progress
        }
      }
    });
    const bundles = await buildEntrypoints();
    while (!heartbeating) {
      if (loadgen.exitCode !== null)
        throw new Error(`load generator exited (${loadgen.exitCode}); see ${runDir}/loadgen.log`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 1_000));
    console.log(`load generator heartbeating for ${D * 2} candidates and ${D * N} nodes; starting the coordinator`);
    startedAt = performance.now();
    const coordinator = (coordinatorProc = spawnLogged("coordinator", process.execPath, [
      ...(process.env.RAVEN_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      bundles.coordinator,
      "--nats",
      url,
      "--config",
      configFile,
      ...(kubeconfig ? ["--kubeconfig", kubeconfig] : []),
    ]));
    const deadline = performance.now() + 120_000;
    let lastReport = performance.now();
    while ((elected.size < D || !registrationsDone) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      if (performance.now() - lastReport > 2_000) {
        console.log(
          `  ${elected.size}/${D} domains elected at ${((performance.now() - startedAt) / 1000).toFixed(1)} s`,
        );
        lastReport = performance.now();
      }
      if (coordinator.exitCode !== null)
        throw new Error(`coordinator exited (${coordinator.exitCode}); see ${runDir}/coordinator.log`);
    }
    if (elected.size < D) throw new Error(`only ${elected.size}/${D} domains elected after 120 s`);
    const coldElectMs = allElectedAt - startedAt;
    console.log(
      `all ${D} domains elected ${coldElectMs.toFixed(0)} ms after the coordinator started (${termChanges} term changes after the first election while the load generator registered and warmed up); settling 5 s`,
    );
    await new Promise((r) => setTimeout(r, 5_000));
    console.log(`measuring steady state for ${steadyMs / 1000} s`);
    const changesBefore = termChanges;
    const [{ cpuPct, rssMb }, loadgenStats] = await Promise.all([
      sampleProcess(coordinator.pid!, steadyMs),
      sampleProcess(loadgen.pid!, steadyMs),
    ]);
    const steadyTermChanges = termChanges - changesBefore;
    const gwRate = (D * 2 * 1000) / defaultTimings.gatewayHeartbeatMs;
    const nodeRate = (D * N * 1000) / defaultTimings.nodeHeartbeatMs;
    console.log(
      `heartbeats into the coordinator: ${gwRate.toFixed(0)}/s from candidates + ${nodeRate.toFixed(0)}/s from nodes`,
    );
    console.log(
      `re-elections during the steady window: ${steadyTermChanges} (a failover means a simulated candidate missed ${defaultTimings.gatewayDeadAfterMs} ms of heartbeats); load generator used ${loadgenStats.cpuPct.toFixed(0)} % of a core`,
    );
    console.log(
      `goals: cpu <= 50 % (${cpuPct <= 50 ? "met" : "missed"}), rss <= 1024 MB (${rssMb <= 1024 ? "met" : "missed"}), cold election <= 5000 ms (${coldElectMs <= 5000 ? "met" : "missed"})`,
    );
    const scaleLine = `scale nodes=${D * N} domains=${D} coordinator_cpu_pct=${cpuPct.toFixed(1)} rss_mb=${rssMb.toFixed(0)} cold_elect_ms=${coldElectMs.toFixed(0)}`;
    if (!kube) {
      sub.unsubscribe();
      await nc.close();
      console.log(scaleLine);
      return;
    }
    console.log(
      `Kubernetes: ${gatewaysInKube!()}/${D} Gateways show their active endpoints; ${writes!.statusPatches} status patches and ${writes!.events} Events so far`,
    );
    console.log(`forcing ${failoversPerS} failovers a second for ${failoverS} s`);
    const before = { patches: writes!.statusPatches, events: writes!.events, terms: termChanges };
    loadgen.stdin!.write(`failovers ${failoversPerS}\n`);
    const window = sampleProcess(coordinator.pid!, failoverS * 1000);
    const perSecond: number[] = [];
    for (let s = 0; s < failoverS; s++) {
      const at = writes!.statusPatches;
      await new Promise((r) => setTimeout(r, 1000));
      perSecond.push(writes!.statusPatches - at);
    }
    loadgen.stdin!.write("failovers 0\n");
    const failoverStats = await window;
    const patches = writes!.statusPatches - before.patches;
    const failovers = termChanges - before.terms;
    const patchRate = patches / failoverS;
    const failoverRate = failovers / failoverS;
    console.log(
      `failover window: ${failovers} term changes (${failoverRate.toFixed(1)}/s), ${patches} status patches (${patchRate.toFixed(1)}/s; per second ${perSecond.join(" ")}), ${writes!.events - before.events} Events; coordinator ${failoverStats.cpuPct.toFixed(0)} % of a core`,
    );
    sub.unsubscribe();
    await nc.close();
    const peakRss = Math.max(rssMb, failoverStats.rssMb);
    console.log(
      `goals: sync <= 10000 ms (${coldElectMs <= 10000 ? "met" : "missed"}), rss <= 1024 MB (${peakRss <= 1024 ? "met" : "missed"}), status patches never above the failover rate (${patchRate <= failoverRate ? "met" : "missed"}: ${patchRate.toFixed(1)}/s against ${failoverRate.toFixed(1)} failovers/s)`,
    );
    console.log(scaleLine);
    console.log(
      `kube_scale nodes=${D * N} gateways=${D} sync_ms=${coldElectMs.toFixed(0)} rss_mb=${peakRss.toFixed(0)} status_patches_per_s=${patchRate.toFixed(1)}`,
    );
  } finally {
    cleanup();
  }
});
