// Gateway-actor process: one gateway candidate, connected only to its own domain's NATS server.
import { parseFlags, requireFlag } from "../../shared/args";
import { systemClock } from "../../shared/clock";
import { loadConfigFile } from "../../shared/config";
import { ConfigError } from "../../shared/errors";
import { createMeshInspector } from "../../shared/inspect";
import { createLogger } from "../../shared/log";
import { metricsPortOf, startMetricsServer } from "../../shared/metrics-server";
import { connectDaemon } from "../../shared/nats";
import { onShutdown, runMain } from "../../shared/process";
import { isDomainName, isObjectName } from "../../shared/protocol";
import { GatewayActorService } from "./gateway";

runMain(async () => {
  const parsed = parseFlags(process.argv.slice(2), "gateway-actor --node NAME --domain POOL --gateway GW [options]", "Raven gateway candidate: heartbeats, fenced standby/active role.", {
    nats: { type: "string", default: "nats://127.0.0.1:4222", help: "this domain's NATS server URL(s)" },
    node: { type: "string", help: "node name" },
    domain: { type: "string", help: "network domain (node pool)" },
    gateway: { type: "string", help: "Gateway record this candidate serves (the node name when solo)" },
    config: { type: "string", help: "Raven config JSON (timings)" },
    "metrics-port": { type: "string", help: "serve Prometheus /metrics on this port (0 or absent = off)" },
  });
  if (!parsed) return;
  const { flags } = parsed;
  const node = requireFlag(flags.node, "node");
  const domain = requireFlag(flags.domain, "domain");
  const gateway = requireFlag(flags.gateway, "gateway");
  if (!isObjectName(node)) throw new ConfigError("--node", `${JSON.stringify(node)} is not a valid node name`);
  if (!isDomainName(domain)) throw new ConfigError("--domain", `${JSON.stringify(domain)} is not a DNS label`);
  if (!isObjectName(gateway)) throw new ConfigError("--gateway", `${JSON.stringify(gateway)} is not a valid name`);
  const config = loadConfigFile(flags.config);
  const log = createLogger({ service: "gateway-actor", actor: `gateway/${node}`, node, domain, gateway }, { term: () => service.actor.getSnapshot().context.term });
  const metricsPort = metricsPortOf(flags["metrics-port"]);
  const nc = await connectDaemon(flags.nats!, `gateway-actor/${node}`);
  const inspector = createMeshInspector(nc, { actorSource: `gateway/${node}`, domain });
  const service = new GatewayActorService({ nc, node, domain, gateway, timings: config.timings, clock: systemClock, log, onFatal: () => process.exit(1), inspector });
  service.start();
  log.info({ nats: flags.nats }, "gateway actor started");
  const metrics = metricsPort ? await startMetricsServer({ port: metricsPort }).catch((err) => void log.warn({ err: String(err) }, "no /metrics")) : undefined;
  if (metrics) log.info({ metrics: metrics.url }, "serving metrics");
  onShutdown(async () => {
    await service.drain();
    service.stop();
    inspector.stop();
    await metrics?.close();
    await nc.drain().catch(() => nc.close());
  }, config.timings.drainTimeoutMs + 2_000);
});
