// bench:scale — one coordinator process supervises 10,000 simulated nodes in 1,000 domains, two gateway
// candidates each. A load generator in another process registers every node and heartbeats (nodes at 1 Hz,
// candidates at the rate and with the detection settings bench:failover uses). Measures the time until every
// domain has its active gateways (cold election), then the coordinator's steady-state CPU and peak RSS.
// Last line: scale nodes=N domains=D coordinator_cpu_pct=C rss_mb=M cold_elect_ms=E
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
import { gatewayName, nodeName } from "./sim";

runMain(async () => {
  const parsed = parseFlags(process.argv.slice(2), "npm run bench:scale -- [options]", "Coordinator scale benchmark.", {
    domains: { type: "string", default: "1000", help: "domains (each with 2 gateway candidates)" },
    "nodes-per-domain": { type: "string", default: "10", help: "nodes per domain, including the 2 candidates" },
    "steady-ms": { type: "string", default: "20000", help: "steady-state measurement window" },
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
  const cleanup = () => {
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
    console.log(`hub ${url}; seeding ${D} Gateway records`);

    const nc = await connectOnce(url, "bench-scale");
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
    sub.unsubscribe();
    await nc.close();
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
    console.log(
      `scale nodes=${D * N} domains=${D} coordinator_cpu_pct=${cpuPct.toFixed(1)} rss_mb=${rssMb.toFixed(0)} cold_elect_ms=${coldElectMs.toFixed(0)}`,
    );
  } finally {
    cleanup();
  }
});
