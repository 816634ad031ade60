// bench:scrape: Debian's Prometheus scrapes edge targets through Raven's proxy, as a real monitoring setup
// would (issue 16). The demo fleet runs in network namespaces (proxy mode, no tunnel, no demo kubelets); a
// target farm in each edge domain with a Gateway (bench/target-farm.ts) gives every target its own name and
// address, addresses colliding across domains; Prometheus (the root namespace, the cloud side) scrapes each
// target's /metrics every --interval-s through `proxy_url` = the active cloud gateway's front door, for
// --minutes. Every --burst-every-s, all targets are also fetched at once, as metrics-server does. With
// --failover, an edge domain's active gateway is SIGKILLed halfway: at most one interval of that domain's
// scrapes may fail.
// Reported: failed scrapes (Prometheus's own `up`, plus the bursts'), scrape duration p99 (Prometheus's
// `scrape_duration_seconds`), the busier active gateway's CPU (% of one core) and its memory per open channel
// ((peak RSS - RSS before the scraping) / the most channels open at once).
// Last line: scrape targets=T interval_s=I minutes=M failed=F scrape_p99_ms=S gw_cpu_pct=G kib_per_channel=K
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFlags } from "../shared/args";
import { domainOf } from "../shared/domains";
import { ConfigError } from "../shared/errors";
import { gatewayKey } from "../shared/gateway";
import { runMain } from "../shared/process";
import { loadTopology, partitionOf } from "../shared/topology";
import { REPO_ROOT } from "../services/fleet/build";
import { Fleet } from "../services/fleet/fleet";
import { nsExec } from "../services/fleet/netns";
import { freePorts, waitForPort } from "../services/fleet/procs";
import { percentile, rssMb, sampleProcess } from "./proc-stats";
import { targetName } from "./sim";

const PROMETHEUS = "/usr/bin/prometheus";
const TARGET_PORT = 9100;

type Door = { host: string; port: number; node: string };

function sh(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) =>
    execFile(cmd, args, { encoding: "utf8", timeout: 10_000 }, (_err, stdout) => resolve(stdout ?? "")),
  );
}

/** One GET through the forward proxy (a fresh connection, as metrics-server's bursts open many at once);
 * `why` names a failure: the status code, or the error. */
function fetchVia(
  door: Door,
  target: string,
  path: string,
  timeoutMs: number,
): Promise<{ ok: boolean; ms: number; why?: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const done = (why?: string) =>
      resolve({ ok: why === undefined, ms: performance.now() - t0, ...(why ? { why } : {}) });
    const req = http.request(
      { host: door.host, port: door.port, path: `http://${target}${path}`, headers: { host: target }, agent: false },
      (res) => {
        res.resume();
        res.on("end", () => done(res.statusCode === 200 ? undefined : `HTTP ${res.statusCode}`));
        res.on("error", (err) => done(err.message));
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error("timeout")));
    req.on("error", (err) => done((err as NodeJS.ErrnoException).code ?? err.message));
    req.end();
  });
}

async function promQuery(port: number, query: string): Promise<unknown[]> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await res.json()) as { status: string; data?: { result?: unknown[] }; error?: string };
  if (body.status !== "success") throw new Error(`prometheus: ${query}: ${body.error ?? res.status}`);
  return body.data?.result ?? [];
}

/** Every sample of a range vector, as [series labels, values]. */
async function samples(port: number, query: string): Promise<{ labels: Record<string, string>; values: number[] }[]> {
  const result = (await promQuery(port, query)) as { metric: Record<string, string>; values: [number, string][] }[];
  return result.map((r) => ({ labels: r.metric, values: r.values.map(([, v]) => Number(v)) }));
}

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "npm run bench:scrape -- [options]",
    "Prometheus scraping edge targets through Raven's proxy: failed scrapes, p99, gateway CPU and memory.",
    {
      targets: { type: "string", default: "1000", help: "targets, spread over the edge domains that have a Gateway" },
      "interval-s": { type: "string", default: "15", help: "Prometheus scrape interval" },
      minutes: { type: "string", default: "5", help: "how long Prometheus scrapes" },
      "burst-every-s": { type: "string", default: "60", help: "all targets at once, this often (0: no bursts)" },
      series: { type: "string", default: "100", help: "samples per target page" },
      failover: { type: "boolean", default: false, help: "SIGKILL an edge domain's active gateway halfway" },
    },
  );
  if (!parsed) return;
  const num = (name: "targets" | "interval-s" | "minutes" | "burst-every-s" | "series", min: number) => {
    const v = Number(parsed.flags[name]);
    if (!Number.isFinite(v) || v < min) throw new ConfigError(`--${name}`, `must be a number >= ${min}`);
    return v;
  };
  const targets = num("targets", 1);
  const intervalS = num("interval-s", 1);
  const minutes = num("minutes", 0.5);
  const burstEveryS = num("burst-every-s", 0);
  const series = num("series", 1);
  if (process.getuid?.() !== 0) throw new ConfigError("user", "bench:scrape needs root (network namespaces)");
  if (!existsSync(PROMETHEUS))
    throw new ConfigError("prometheus", `${PROMETHEUS} is missing; scripts/setup.sh installs Debian's prometheus`);

  const runDir = mkdtempSync(join(tmpdir(), "raven-scrape-"));
  const children: ChildProcess[] = [];
  const topology = loadTopology(join(REPO_ROOT, "topology.json"));
  const fleet = new Fleet(topology, {
    runDir,
    hubPort: 0,
    netns: true,
    demoTargets: false,
    restartDelayMs: 1_000,
    progress: (l) => console.log(`  fleet: ${l.trim()}`),
  });
  const cleanup = async () => {
    for (const c of children) c.kill("SIGKILL");
    await fleet.stop().catch(() => {});
    if (process.env.RAVEN_KEEP_RUN_DIR) console.log(`run directory kept: ${runDir}`);
    else rmSync(runDir, { recursive: true, force: true });
  };
  process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    await fleet.start();
    // Edge domains served by a Gateway (a solo node's domain has no room for targets: each would be its own).
    const { units } = partitionOf(topology);
    const edges = topology.gateways
      .filter((g) => g.spec.exposeType === "")
      .map((g) => ({ gateway: g.metadata.name, domain: units.get(gatewayKey(g.metadata.name))!.domain! }));
    const per = edges.map((_, i) => Math.floor(targets / edges.length) + (i < targets % edges.length ? 1 : 0));
    console.log(`target farms: ${edges.map((e, i) => `${e.domain} ${per[i]}`).join(", ")} (port ${TARGET_PORT})`);
    await Promise.all(
      edges.map(
        (e, i) =>
          new Promise<void>((resolve, reject) => {
            const argv = nsExec(fleet.namespaceOf(e.domain)!, [
              process.execPath,
              "--import",
              "tsx",
              join(REPO_ROOT, "bench/target-farm.ts"),
              ...["--nats", fleet.natsUrlFor(e.domain), "--domain", e.domain, "--gateway", e.gateway],
              ...["--count", String(per[i]), "--port", String(TARGET_PORT), "--series", String(series)],
            ]);
            const farm = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
            children.push(farm);
            farm.stdout!.on("data", (b: Buffer) => {
              for (const line of b.toString().split("\n").filter(Boolean)) {
                if (line.includes('"complete":true')) resolve();
              }
            });
            farm.on("exit", (code) => reject(new Error(`target farm ${e.domain} exited (${code})`)));
          }),
      ),
    );
    console.log(`all ${targets} targets registered`);

    const nc = await fleet.connect();
    const st = await fleet.status(nc, 2_000);
    await nc.close();
    const activeOf = (gateway: string) =>
      st?.domains.find((d) => d.gateway === gateway)?.active.find((a) => a.type === "proxy")?.nodeName;
    const cloudGw = topology.gateways.find((g) => g.spec.exposeType !== "")!.metadata.name;
    const cloudNode = activeOf(cloudGw)!;
    const listen = fleet.proxyListen(cloudNode)!;
    const door: Door = { host: listen.host, port: listen.frontPort, node: cloudNode };
    const names = edges.flatMap((e, i) => Array.from({ length: per[i]! }, (_, j) => targetName(e.domain, j)));
    // Every target answers through the proxy before Prometheus starts (the records reach the gateways).
    for (let tries = 0; ; tries++) {
      const probe = await Promise.all(
        names.slice(0, 50).map((n) => fetchVia(door, `${n}:${TARGET_PORT}`, "/metrics", 5000)),
      );
      if (probe.every((p) => p.ok)) break;
      if (tries > 30) throw new Error("targets do not answer through the proxy");
      await new Promise((r) => setTimeout(r, 1000));
    }

    // Prometheus, scraping through the cloud gateway's front door.
    const [promPort] = await freePorts(1);
    const conf = join(runDir, "prometheus.yml");
    writeFileSync(
      conf,
      [
        "global:",
        `  scrape_interval: ${intervalS}s`,
        `  scrape_timeout: ${Math.min(10, intervalS)}s`,
        "scrape_configs:",
        "  - job_name: edge",
        `    proxy_url: http://${door.host}:${door.port}`,
        "    static_configs:",
        "      - targets:",
        ...names.map((n) => `          - ${n}:${TARGET_PORT}`),
        "",
      ].join("\n"),
    );
    const prom = spawn(
      PROMETHEUS,
      [
        `--config.file=${conf}`,
        `--storage.tsdb.path=${join(runDir, "prometheus")}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    children.push(prom);
    await waitForPort(promPort!, 30_000);
    const windowS = minutes * 60;
    console.log(
      `prometheus scraping ${targets} targets every ${intervalS} s through ${door.host}:${door.port} for ${windowS} s`,
    );

    // The active gateways: CPU and memory over the window, the channels open (cloud gateway's metrics).
    const gatewayPids = new Map<string, number>();
    for (const gw of [cloudGw, ...edges.map((e) => e.gateway)]) {
      const node = activeOf(gw);
      const pid = node ? fleet.procs.get(`gateway-${node}`)?.pid : undefined;
      if (node && pid) gatewayPids.set(node, pid);
    }
    const rssBefore = new Map([...gatewayPids].map(([n, pid]) => [n, rssMb(pid)]));
    const metricsPort = (node: string) => {
      const args = fleet.procs.get(`gateway-${node}`)!.spec.args;
      return args[args.indexOf("--metrics-port") + 1];
    };
    const cloudNs = fleet.namespaceOf(domainOf(topology.nodes.find((n) => n.name === cloudNode)!))!;
    let maxChannels = 0;
    const t0 = performance.now();
    const sampling = Promise.all(
      [...gatewayPids].map(async ([n, pid]) => [n, await sampleProcess(pid, windowS * 1000)] as const),
    );
    const bursts: { ok: number; failed: number; p99: number }[] = [];
    let failoverAt = -1;
    const failover = parsed.flags.failover ? edges[0]! : null;
    while (performance.now() - t0 < windowS * 1000) {
      const elapsed = (performance.now() - t0) / 1000;
      const text = await sh(
        "ip",
        nsExec(cloudNs, ["curl", "-s", `http://127.0.0.1:${metricsPort(cloudNode)}/metrics`]).slice(1),
      );
      const open = Number(/^raven_channels_open (\d+)/m.exec(text)?.[1] ?? 0);
      maxChannels = Math.max(maxChannels, open);
      if (burstEveryS > 0 && elapsed >= (bursts.length + 0.5) * burstEveryS) {
        const results = await Promise.all(
          names.map((n) => fetchVia(door, `${n}:${TARGET_PORT}`, "/metrics/resource", 10_000)),
        );
        const ms = results.map((r) => r.ms).sort((a, b) => a - b);
        bursts.push({
          ok: results.filter((r) => r.ok).length,
          failed: results.filter((r) => !r.ok).length,
          p99: percentile(ms, 99),
        });
        const why = new Map<string, number>();
        for (const r of results) if (r.why) why.set(r.why, (why.get(r.why) ?? 0) + 1);
        console.log(
          `  burst ${bursts.length}: ${bursts.at(-1)!.ok}/${targets} answered, p99 ${bursts.at(-1)!.p99.toFixed(0)} ms${why.size ? `; failed: ${[...why].map(([w, n]) => `${w} ${n}`).join(", ")}` : ""}`,
        );
      }
      if (failover && failoverAt < 0 && elapsed >= windowS / 2) {
        const victim = activeOf(failover.gateway)!;
        failoverAt = elapsed;
        fleet.kill(`gateway-${victim}`);
        console.log(`  SIGKILL gateway-${victim} (${failover.domain}'s active) at ${elapsed.toFixed(0)} s`);
      }
      await new Promise((r) => setTimeout(r, 2_000));
    }
    const cpu = new Map(await sampling);

    // What Prometheus saw over the window.
    const range = `${Math.floor(windowS)}s`;
    const up = await samples(promPort!, `up{job="edge"}[${range}]`);
    const durations = await samples(promPort!, `scrape_duration_seconds{job="edge"}[${range}]`);
    const scrapes = up.reduce((n, s) => n + s.values.length, 0);
    const failedScrapes = up.reduce((n, s) => n + s.values.filter((v) => v !== 1).length, 0);
    const failedByDomain = new Map<string, number>();
    for (const s of up) {
      const domain = edges.find((e) => s.labels.instance?.startsWith(`${e.domain}-t`))?.domain ?? "?";
      failedByDomain.set(domain, (failedByDomain.get(domain) ?? 0) + s.values.filter((v) => v !== 1).length);
    }
    const allMs = durations.flatMap((s) => s.values.map((v) => v * 1000)).sort((a, b) => a - b);
    const p99 = percentile(allMs, 99);
    const burstFailed = bursts.reduce((n, b) => n + b.failed, 0);
    console.log(
      `prometheus: ${scrapes} scrapes, ${failedScrapes} failed (${[...failedByDomain].map(([d, n]) => `${d} ${n}`).join(", ")}); duration p50 ${percentile(allMs, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${allMs.at(-1)?.toFixed(1)} ms`,
    );
    if (bursts.length)
      console.log(
        `bursts: ${bursts.length} x ${targets} at once, ${burstFailed} failed, p99 ${bursts.map((b) => b.p99.toFixed(0)).join("/")} ms`,
      );
    if (failover)
      console.log(
        `failover: ${failover.domain} lost ${failedByDomain.get(failover.domain) ?? 0} scrapes (one interval is ${per[edges.indexOf(failover)]} targets)`,
      );
    let busiest = "";
    let busiestCpu = -1;
    for (const [n, s] of cpu) {
      console.log(
        `  gateway ${n}: ${s.cpuPct.toFixed(1)} % of a core, RSS ${rssBefore.get(n)!.toFixed(0)} -> peak ${s.rssMb.toFixed(0)} MB`,
      );
      if (s.cpuPct > busiestCpu) [busiest, busiestCpu] = [n, s.cpuPct];
    }
    const cloudCpu = cpu.get(cloudNode)!;
    const kibPerChannel =
      maxChannels > 0 ? ((cloudCpu.rssMb - rssBefore.get(cloudNode)!) * 1024) / maxChannels : Number.NaN;
    console.log(`channels: at most ${maxChannels} open at the cloud gateway ${cloudNode}`);
    const failed = failedScrapes + burstFailed;
    console.log(
      `goals: failed = 0 (${failed === 0 ? "met" : "missed"}), p99 <= 50 ms (${p99 <= 50 ? "met" : "missed"}), busier gateway (${busiest}) <= 25 % (${busiestCpu <= 25 ? "met" : "missed"})`,
    );
    console.log(
      `scrape targets=${targets} interval_s=${intervalS} minutes=${minutes} failed=${failed} scrape_p99_ms=${p99.toFixed(1)} gw_cpu_pct=${busiestCpu.toFixed(1)} kib_per_channel=${kibPerChannel.toFixed(1)}`,
    );
  } finally {
    await cleanup();
  }
});
