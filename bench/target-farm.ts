// A farm of scrape targets for bench:scrape, run inside one edge domain's network namespace: N nodes, each
// with its own name (<domain>-t0001...) and its own address (10.99.x.y on lan0, the same range in every
// domain, so addresses collide across domains as real ones do), registered with the coordinator through the
// domain's leaf like any node (labelled into the domain's pool and Gateway), and one HTTP server on
// 0.0.0.0:<port> answering /metrics for whichever target was asked (by the local address the request came
// to): a node-exporter-sized page naming the target. Registration only: the targets send no heartbeats (they
// show not ready in `raven status`; the proxy routes by the records). Prints JSON progress lines; exits when
// its parent goes.
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { connect } from "@nats-io/transport-node";
import { parseFlags } from "../shared/args";
import { runMain } from "../shared/process";
import { encode, subjects, tryDecode } from "../shared/protocol";
import { targetIP, targetName } from "./sim";

/** A page of about `series` samples, like a small node-exporter's. */
function metricsPage(name: string, series: number, served: number): string {
  const lines = [
    "# HELP node_info The target this page is from.",
    "# TYPE node_info gauge",
    `node_info{node="${name}"} 1`,
    "# HELP raven_target_scrapes_total Pages served by this target.",
    "# TYPE raven_target_scrapes_total counter",
    `raven_target_scrapes_total ${served}`,
    "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.",
    "# TYPE node_cpu_seconds_total counter",
  ];
  for (let i = 0; i < series; i++)
    lines.push(`node_cpu_seconds_total{cpu="${i >> 3}",mode="m${i & 7}"} ${served * 15 + i}`);
  return lines.join("\n") + "\n";
}

runMain(async () => {
  const parsed = parseFlags(process.argv.slice(2), "target-farm [options]", "Scrape targets of one edge domain.", {
    nats: { type: "string", help: "the domain's leaf NATS URL" },
    domain: { type: "string", help: "the edge domain (node pool)" },
    gateway: { type: "string", help: "the domain's Gateway" },
    count: { type: "string", default: "300", help: "targets" },
    port: { type: "string", default: "9100", help: "port every target serves /metrics on" },
    series: { type: "string", default: "100", help: "samples per page" },
  });
  if (!parsed) return;
  const { flags } = parsed;
  const domain = flags.domain!;
  const count = Number(flags.count);
  const series = Number(flags.series);
  const say = (o: object) => process.stdout.write(JSON.stringify(o) + "\n");
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && process.exit(0), 500).unref();

  // Addresses: one /32 per target on lan0 (where the domain's node addresses live), added in one batch.
  const batch = Array.from({ length: count }, (_, i) => `address add ${targetIP(i)}/32 dev lan0`).join("\n");
  execFileSync("ip", ["-force", "-batch", "-"], { input: batch + "\n", stdio: ["pipe", "ignore", "ignore"] });

  const byIP = new Map(Array.from({ length: count }, (_, i) => [targetIP(i), targetName(domain, i)]));
  const served = new Map<string, number>();
  const server = createServer((req, res) => {
    const local = (req.socket.localAddress ?? "").replace(/^::ffff:/, "");
    const name = byIP.get(local);
    if (!name || (req.url !== "/metrics" && req.url !== "/metrics/resource")) {
      res.writeHead(404).end();
      return;
    }
    const n = (served.get(name) ?? 0) + 1;
    served.set(name, n);
    const body = metricsPage(name, series, n);
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = 5_000; // Node's default, as the targets had
  await new Promise<void>((resolve) => server.listen(Number(flags.port), "0.0.0.0", resolve));

  const nc = await connect({ servers: flags.nats!, maxReconnectAttempts: -1, name: `target-farm/${domain}` });
  let next = 0;
  let done = 0;
  const register = async () => {
    while (next < count) {
      const i = next++;
      const node = targetName(domain, i);
      const body = {
        node,
        domain,
        labels: { "apps.openyurt.io/nodepool": domain, "raven.openyurt.io/gateway": flags.gateway! },
        internalIP: targetIP(i),
        startedAt: Date.now(),
      };
      for (let attempt = 0; ; attempt++) {
        try {
          const reply = await nc.request(subjects.nodeRegister(domain, node), encode("node.register", body), {
            timeout: 2_000,
          });
          if (tryDecode(reply.data)?.type === "node.registered") break;
        } catch {
          // shed while the coordinator is busy: retry
        }
        await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)));
      }
      if (++done % 100 === 0) say({ registered: done });
    }
  };
  await Promise.all(Array.from({ length: 8 }, register));
  say({ registered: done, complete: true, port: Number(flags.port) });
  setInterval(() => say({ served: [...served.values()].reduce((a, b) => a + b, 0) }), 15_000);
});
