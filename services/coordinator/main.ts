// Coordinator process: connects to the hub, opens the KV buckets, runs CoordinatorService until signalled.
import { isIP } from "node:net";
import { parseFlags } from "../../shared/args";
import { systemClock } from "../../shared/clock";
import { loadConfigFile } from "../../shared/config";
import { ConfigError, describeError } from "../../shared/errors";
import { createMeshInspector } from "../../shared/inspect";
import { createLogger } from "../../shared/log";
import { metricsPortOf } from "../../shared/metrics-server";
import { serveActorProcess } from "../../shared/actor-process";
import { connectDaemon, openBuckets } from "../../shared/nats";
import { instanceId, runMain } from "../../shared/process";
import { KubeClient } from "../../lib/kube";
import { CoordinatorService } from "./coordinator";

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "coordinator [options]",
    "Raven coordinator: inventory, domains and fenced gateway election (active + standby by KV lease).",
    {
      nats: { type: "string", default: "nats://127.0.0.1:4222", help: "hub NATS URL(s), comma-separated" },
      name: { type: "string", default: "coordinator", help: "replica name (an instance suffix is added)" },
      config: { type: "string", help: "Raven config JSON (timings)" },
      "metrics-port": { type: "string", help: "serve Prometheus /metrics on this port (0 or absent = off)" },
      kubeconfig: {
        type: "string",
        help: "take Nodes, NodePools, Gateways and raven-cfg from this cluster and write status back (default: KV only)",
      },
      "kube-in-cluster": { type: "boolean", help: "as --kubeconfig, with the pod's service account" },
      "proxy-address": {
        type: "string",
        help: "edge nodes' address in the edge-tunnel-nodes hosts map (default: the active cloud proxy endpoint's publicIP)",
      },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const config = loadConfigFile(flags.config);
  const id = instanceId(flags.name ?? "coordinator");
  const log = createLogger({ service: "coordinator", actor: id });
  // Empty means unset: a Deployment passes the flag from a ConfigMap key that may be empty.
  const proxyAddress = flags["proxy-address"] || undefined;
  if (proxyAddress !== undefined && isIP(proxyAddress) === 0)
    throw new ConfigError("--proxy-address", `${JSON.stringify(proxyAddress)} is not an IP address`);
  const kube =
    flags.kubeconfig || flags["kube-in-cluster"]
      ? {
          client: await KubeClient.load(flags.kubeconfig),
          ...(proxyAddress ? { proxyAddress } : {}),
        }
      : undefined;
  const nc = await connectDaemon(flags.nats!, id);
  // KV traffic (lease renewals, record writes) on a connection of its own, so it never queues behind the
  // heartbeat firehose in either direction.
  const kvConn = await connectDaemon(flags.nats!, `${id}/kv`);
  let buckets;
  for (;;) {
    try {
      buckets = await openBuckets(kvConn);
      break;
    } catch (err) {
      log.warn({ err: describeError(err) }, "KV not ready; retrying");
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const inspector = createMeshInspector(nc, { actorSource: `coordinator/${id}` });
  const service = new CoordinatorService({
    nc,
    buckets,
    id,
    timings: config.timings,
    clock: systemClock,
    log,
    onFatal: () => process.exit(1),
    inspector,
    ...(kube ? { kube } : {}),
  });
  await service.start();
  log.info({ nats: flags.nats, kube: kube?.client.server }, "coordinator started");
  await serveActorProcess({
    log,
    metricsPort: metricsPortOf(flags["metrics-port"]),
    connections: [nc, kvConn],
    inspector,
    stop: () => service.stop(),
  });
});
