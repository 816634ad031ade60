// The Prometheus endpoint of a Raven process: GET /metrics on its own small HTTP server (127.0.0.1 by
// default), started by an entrypoint's --metrics-port (0 or absent = off). Scrapes render the shared registry.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError, describeError } from "./errors";
import { METRICS_CONTENT_TYPE, enableProcessMetrics, metricsText } from "./metrics";

export type MetricsServer = Readonly<{ port: number; url: string; close(): Promise<void> }>;

export async function startMetricsServer(opts: { host?: string; port: number }): Promise<MetricsServer> {
  enableProcessMetrics();
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found; try /metrics\n");
      return;
    }
    metricsText().then(
      (text) => res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE }).end(text),
      (err) => res.writeHead(500, { "content-type": "text/plain" }).end(`${describeError(err)}\n`),
    );
  });
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://${host}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Parses a --metrics-port value: absent or 0 = off. */
export function metricsPortOf(value: string | undefined): number {
  const port = Number(value ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError("--metrics-port", `${value} is not a port (0 = off)`);
  return port;
}
