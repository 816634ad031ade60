// The proxy thread's report, handled on the main thread every second: published on the mesh as `gw.proxy`
// (the statechart debugger shows each gateway's peer links and channels) and mirrored into this process's
// Prometheus metrics, whose registry lives on the main thread (the proxy thread's counters come with the
// report and are exported beside the main thread's: see host.ts).
import { describeError } from "../../shared/errors";
import type { Logger } from "../../shared/log";
import { metrics } from "../../shared/metrics";
import type { NatsConnection } from "../../shared/nats";
import { encode, subjects } from "../../shared/protocol";
import type { ProxyStats } from "./proxy";

const LINK_STATES = ["connecting", "up", "degraded", "backoff", "closed"] as const;

export function proxyReporter(
  nc: NatsConnection,
  node: string,
  domain: string,
  log: Logger,
): (stats: ProxyStats) => void {
  let last = { bytesIn: 0, bytesOut: 0, errors: 0 };
  return (stats) => {
    metrics.channelsOpen.set(stats.channelsOpen);
    for (const state of LINK_STATES)
      metrics.proxyLinks.set({ state }, stats.links.filter((t) => t.state === state).length);
    metrics.channelBytes.inc({ direction: "in" }, Math.max(0, stats.bytesIn - last.bytesIn));
    metrics.channelBytes.inc({ direction: "out" }, Math.max(0, stats.bytesOut - last.bytesOut));
    metrics.channelErrors.inc({ reason: "any" }, Math.max(0, stats.errors - last.errors));
    last = { bytesIn: stats.bytesIn, bytesOut: stats.bytesOut, errors: stats.errors };
    try {
      // Protocol 1 calls the links `tunnels` on the wire (shared/protocol/messages.ts); only the name differs.
      const { links, ...rest } = stats;
      nc.publish(
        subjects.gatewayProxy(domain, node),
        encode("gw.proxy", { node, domain, ...rest, tunnels: links, sentAt: Date.now() }),
      );
    } catch (err) {
      log.warn({ err: describeError(err) }, "proxy report not published");
    }
  };
}
