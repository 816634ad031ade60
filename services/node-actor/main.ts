// Node-actor process: registers the node and heartbeats, connected only to its own domain's NATS server.
import { parseFlags, parseJsonFlag, requireFlag } from "../../shared/args";
import { systemClock } from "../../shared/clock";
import { loadConfigFile } from "../../shared/config";
import { domainOf, domainProblem } from "../../shared/domains";
import { ConfigError } from "../../shared/errors";
import { createMeshInspector } from "../../shared/inspect";
import { createLogger } from "../../shared/log";
import { metricsPortOf, startMetricsServer } from "../../shared/metrics-server";
import { connectDaemon } from "../../shared/nats";
import { onShutdown, runMain } from "../../shared/process";
import { isObjectName } from "../../shared/protocol";
import { isIPv4 } from "../../shared/topology";
import { NodeActorService } from "./node";

runMain(async () => {
  const parsed = parseFlags(process.argv.slice(2), "node-actor --node NAME --internal-ip IP [options]", "Raven node actor: registration and heartbeat.", {
    nats: { type: "string", default: "nats://127.0.0.1:4222", help: "this domain's NATS server URL(s)" },
    node: { type: "string", help: "node name" },
    labels: { type: "string", default: "{}", help: 'node labels as JSON, e.g. {"apps.openyurt.io/nodepool":"factory-a"}' },
    "internal-ip": { type: "string", help: "the node's InternalIP" },
    "pod-cidr": { type: "string", help: "the node's podCIDR" },
    config: { type: "string", help: "Raven config JSON (timings)" },
    "metrics-port": { type: "string", help: "serve Prometheus /metrics on this port (0 or absent = off)" },
  });
  if (!parsed) return;
  const { flags } = parsed;
  const name = requireFlag(flags.node, "node");
  if (!isObjectName(name)) throw new ConfigError("--node", `${JSON.stringify(name)} is not a valid node name`);
  const internalIP = requireFlag(flags["internal-ip"], "internal-ip");
  if (!isIPv4(internalIP)) throw new ConfigError("--internal-ip", `${JSON.stringify(internalIP)} is not an IPv4 address`);
  const labels = parseJsonFlag(flags.labels, "labels");
  if (typeof labels !== "object" || labels === null || !Object.values(labels).every((v) => typeof v === "string")) {
    throw new ConfigError("--labels", "must be a JSON object of string values");
  }
  const facts = { name, labels: labels as Record<string, string>, internalIP, ...(flags["pod-cidr"] ? { podCIDR: flags["pod-cidr"] } : {}) };
  const problem = domainProblem(facts);
  if (problem) throw new ConfigError("--labels", problem);
  const domain = domainOf(facts);
  const config = loadConfigFile(flags.config);
  const log = createLogger({ service: "node-actor", actor: `node/${name}`, node: name, domain });
  const nc = await connectDaemon(flags.nats!, `node-actor/${name}`);
  const metricsPort = metricsPortOf(flags["metrics-port"]);
  const metrics = metricsPort ? await startMetricsServer({ port: metricsPort }).catch((err) => void log.warn({ err: String(err) }, "no /metrics")) : undefined;
  if (metrics) log.info({ metrics: metrics.url }, "serving metrics");
  const inspector = createMeshInspector(nc, { actorSource: `node/${name}`, domain });
  const service = new NodeActorService({ nc, facts, domain, timings: config.timings, clock: systemClock, log, onFatal: () => process.exit(1), inspector });
  service.start();
  onShutdown(async () => {
    service.stop();
    inspector.stop();
    await metrics?.close();
    await nc.drain().catch(() => nc.close());
  });
});
