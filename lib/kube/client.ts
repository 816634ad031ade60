// A Kubernetes API client over @kubernetes/client-node 1.4.0's KubeConfig (kubeconfig files, in-cluster
// service accounts, TLS, auth) and its Watch (streamed, newline-delimited events), with one HTTP agent for
// every request. client-node builds a fresh agent for every call (applyToFetchOptions); its Watch aborts the
// request when a watch ends, which closes that socket, but lists and patches would each open a connection
// (and a TLS handshake) of their own. Here the first agent is kept, so lists, watches and patches share its
// kept-alive connections.
// Errors are KubeApiError with the HTTP status and the API server's Status reason and message.
//
// client-node is imported when a client is first loaded, not with this module: importing it costs ~440 ms
// and ~75 MB of RSS, which every actor process of the fleet would otherwise pay without ever using it.
import http from "node:http";
import https from "node:https";
import type { KubeConfig, Watch } from "@kubernetes/client-node";
import { ConfigError, ErrorCode, RavenError } from "../../shared/errors";

/** The API server answered with an error Status, or could not be reached (status 0). */
export class KubeApiError extends RavenError {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.KubeApi, message, options);
    this.name = "KubeApiError";
  }
}

type Agent = http.Agent | https.Agent;

/** A KubeConfig whose requests all share the first agent it built. */
type OneAgentConfig = KubeConfig & { agent: Agent | undefined };

function oneAgentConfig(Base: typeof KubeConfig): OneAgentConfig {
  class OneAgent extends Base {
    agent: Agent | undefined;

    override async applyToFetchOptions(opts: https.RequestOptions): ReturnType<KubeConfig["applyToFetchOptions"]> {
      const out = await super.applyToFetchOptions(opts);
      if (!this.agent) {
        this.agent = out.agent as Agent;
      } else {
        // The one client-node just built has no socket yet: dropping it leaks nothing.
        (out.agent as Agent | undefined)?.destroy();
      }
      out.agent = this.agent;
      return out;
    }
  }
  return new OneAgent();
}

export type WatchEvent = { type: string; object: unknown };

type HeaderList = { forEach(cb: (value: string, name: string) => void): void };
const isHeaderList = (h: unknown): h is HeaderList =>
  typeof h === "object" && h !== null && "forEach" in h && typeof h.forEach === "function";

/** The auth headers client-node computed (a fetch Headers object), as a plain record. */
function headerRecord(h: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isHeaderList(h)) h.forEach((value, name) => (out[name] = value));
  return out;
}

export class KubeClient {
  private readonly watcher: Watch;

  private constructor(
    private readonly kc: OneAgentConfig,
    WatchClass: typeof Watch,
  ) {
    this.watcher = new WatchClass(kc);
  }

  /** From a kubeconfig file, or (no path) the pod's service account (in-cluster). */
  static async load(kubeconfig?: string): Promise<KubeClient> {
    const lib = await import("@kubernetes/client-node");
    const kc = oneAgentConfig(lib.KubeConfig);
    try {
      if (kubeconfig) kc.loadFromFile(kubeconfig);
      else kc.loadFromCluster();
    } catch (err) {
      throw new ConfigError("--kubeconfig", `cannot load ${kubeconfig ?? "the in-cluster config"}: ${String(err)}`);
    }
    const cluster = kc.getCurrentCluster();
    const source = kubeconfig ?? "the in-cluster config";
    if (!cluster) throw new ConfigError("--kubeconfig", `${source} names no current cluster`);
    if (cluster.server.startsWith("http:") && !cluster.skipTLSVerify)
      throw new ConfigError(
        "--kubeconfig",
        `${source}: cluster ${cluster.name} is plain HTTP (${cluster.server}); client-node reaches one only with insecure-skip-tls-verify: true`,
      );
    return new KubeClient(kc, lib.Watch);
  }

  get server(): string {
    return this.kc.getCurrentCluster()!.server;
  }

  /** One JSON request; resolves with the parsed body, rejects with a KubeApiError. */
  async request(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<unknown> {
    const opts = await this.kc.applyToFetchOptions({});
    const url = new URL(this.server + path);
    const headers: Record<string, string> = { ...headerRecord(opts.headers), Accept: "application/json" };
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) headers["Content-Type"] = contentType;
    const send = url.protocol === "https:" ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = send(url, { method, headers, agent: opts.agent as Agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (err) => reject(new KubeApiError(0, "Unreachable", `${method} ${path}: ${err.message}`)));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = text === "" ? {} : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300 && parsed !== undefined) return resolve(parsed);
          const st = (parsed ?? {}) as { reason?: unknown; message?: unknown };
          const reason = typeof st.reason === "string" ? st.reason : (res.statusMessage ?? "Error");
          const message = typeof st.message === "string" ? st.message : text.slice(0, 200);
          reject(new KubeApiError(status, reason, `${method} ${path}: ${status} ${reason}: ${message}`));
        });
      });
      req.setTimeout(30_000, () => req.destroy(new Error("no answer within 30 s")));
      req.on("error", (err) => reject(new KubeApiError(0, "Unreachable", `${method} ${path}: ${err.message}`)));
      req.end(payload);
    });
  }

  /**
   * Opens a watch (client-node's Watch, through the one agent); `done` is called once, with the error if it
   * failed. Resolves with the means to abort it.
   */
  async watch(
    path: string,
    query: Record<string, string>,
    onEvent: (e: WatchEvent) => void,
    done: (err: unknown) => void,
  ): Promise<() => void> {
    const controller = await this.watcher.watch(path, query, (type, object) => onEvent({ type, object }), done);
    return () => controller.abort();
  }

  /** Releases the agent's sockets. */
  close(): void {
    this.kc.agent?.destroy();
  }
}
