// `raven ui`: the statechart debugger's HTTP server. Serves the page (services/ui/static: plain HTML, CSS and
// JS, no CDN, nothing fetched from elsewhere), the statechart SVGs drawn from the machine definitions
// (services/cli/diagrams.ts, elkjs in-process), the recorded inspection history for the timeline, and a
// Server-Sent Events stream of live entries and topology. A client that cannot keep up (more than
// MAX_PENDING_BYTES unsent) is disconnected; the page reconnects and reloads the history.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { systemClock, type Clock } from "../../shared/clock";
import { describeError } from "../../shared/errors";
import { metricsText, METRICS_CONTENT_TYPE } from "../../shared/metrics";
import type { NatsConnection } from "../../shared/nats";
import { instanceId } from "../../shared/process";
import { MACHINES, render, type MachineName } from "./diagrams";
import { InspectRecorder, type RecorderUpdate } from "./recorder";

export const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), "static");

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

const MAX_PENDING_BYTES = 8 * 1024 * 1024;
/** Entries sent to a page when it loads (the timeline's reach). */
const HISTORY_ON_LOAD = 20_000;

export type UiServerOptions = Readonly<{
  nc: NatsConnection;
  host?: string;
  port: number;
  clock?: Clock;
  /** Test hooks: faster presence and status polling. */
  presenceEveryMs?: number;
  statusEveryMs?: number;
}>;

export type UiServer = Readonly<{ url: string; port: number; recorder: InspectRecorder; close(): Promise<void> }>;

export async function startUiServer(opts: UiServerOptions): Promise<UiServer> {
  const clock = opts.clock ?? systemClock;
  const recorder = new InspectRecorder({
    nc: opts.nc,
    clock,
    viewerId: instanceId("ui"),
    ...(opts.presenceEveryMs ? { presenceEveryMs: opts.presenceEveryMs } : {}),
    ...(opts.statusEveryMs ? { statusEveryMs: opts.statusEveryMs } : {}),
  });
  const svgs = new Map<string, Promise<string>>();
  const streams = new Set<ServerResponse>();

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer) => {
    res.writeHead(status, { "content-type": type, "cache-control": "no-store", "x-content-type-options": "nosniff" });
    res.end(body);
  };
  const json = (res: ServerResponse, value: unknown) =>
    send(res, 200, "application/json; charset=utf-8", JSON.stringify(value));

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "text/plain", "method not allowed\n");
    const stat = STATIC_FILES[url.pathname];
    if (stat) return send(res, 200, stat.type, await readFile(join(STATIC_DIR, stat.file)));
    const chart = /^\/api\/statechart\/([a-z0-9]+)\.svg$/.exec(url.pathname);
    if (chart) {
      const name = chart[1]!;
      if (!Object.hasOwn(MACHINES, name)) return send(res, 404, "text/plain", `no machine ${name}\n`);
      if (!svgs.has(name)) svgs.set(name, render(name as MachineName, "svg"));
      return send(res, 200, "image/svg+xml", await svgs.get(name)!);
    }
    switch (url.pathname) {
      case "/api/state":
        return json(res, {
          topology: recorder.topology,
          machines: Object.keys(MACHINES),
          droppedHistory: recorder.droppedHistory,
          droppedAtSource: recorder.droppedAtSource,
          entries: recorder.entries(0, HISTORY_ON_LOAD),
        });
      case "/api/history":
        return json(
          res,
          recorder.entries(
            Number(url.searchParams.get("since") ?? 0) || 0,
            Number(url.searchParams.get("limit") ?? HISTORY_ON_LOAD) || HISTORY_ON_LOAD,
          ),
        );
      case "/api/events":
        return stream(req, res);
      case "/metrics":
        return send(res, 200, METRICS_CONTENT_TYPE, await metricsText());
      case "/favicon.ico":
        res.writeHead(204).end();
        return;
      case "/healthz":
        return send(res, 200, "text/plain", "ok\n");
      default:
        return send(res, 404, "text/plain", "not found\n");
    }
  };

  const stream = (req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
    res.write(`retry: 1000\n\n`);
    streams.add(res);
    const off = recorder.listen((u: RecorderUpdate) => {
      if (res.writableLength > MAX_PENDING_BYTES) {
        res.destroy();
        return;
      }
      const data = u.type === "inspect" ? u.entries : u.topology;
      res.write(`event: ${u.type}\ndata: ${JSON.stringify(data)}\n\n`);
    });
    const keepalive = setInterval(() => res.write(`: keepalive\n\n`), 15_000);
    const done = () => {
      off();
      clearInterval(keepalive);
      streams.delete(res);
    };
    req.on("close", done);
    res.on("error", done);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) send(res, 500, "text/plain", `${describeError(err)}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "127.0.0.1", () => resolve());
  });
  recorder.start();
  // Lay every diagram out now (elkjs takes a moment the first time), not when the first click asks for one.
  for (const name of Object.keys(MACHINES)) svgs.set(name, render(name as MachineName, "svg"));
  const port = (server.address() as AddressInfo).port;
  const host = opts.host && opts.host !== "0.0.0.0" && opts.host !== "::" ? opts.host : "127.0.0.1";
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/`,
    port,
    recorder,
    async close() {
      recorder.stop();
      for (const s of streams) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
