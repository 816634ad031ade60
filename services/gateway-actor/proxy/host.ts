// The main thread's handle on the proxy thread (worker.ts): starts it, writes the gateway's lease into shared
// memory on every heartbeat (lease-cell.ts: the proxy thread is not woken for it), sends the role when it
// changes (held or not, the term), and stops it. The worker runs the bundle next to the gateway-actor bundle, or the TypeScript source under tsx.
import { Worker } from "node:worker_threads";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import type { ProxyConfig, ProxyStats } from "./engine";
import { LeaseCell } from "./lease-cell";
import type { FromWorker, ToWorker, WorkerInit } from "./worker";

export type ProxyHostOptions = Readonly<{
  workerUrl: URL;
  nats: string;
  node: string;
  domain: string;
  gateway: string;
  config: ProxyConfig;
  log: Logger;
  logBindings: Record<string, string>;
  onFatal: (err: Error) => void;
  /** The proxy thread's report, every second. */
  onStats?: (stats: ProxyStats) => void;
}>;

export class ProxyHost {
  private readonly worker: Worker;
  private stopped = false;
  /** The proxy thread can serve (see ProxyEngine's onReady); until then the gateway reports its data path
   * as not ready, so the coordinator does not elect it while another candidate can serve. */
  ready = false;
  private lastRole: { proxy: boolean; term: number } | null = null;
  private readonly lease = new LeaseCell();

  constructor(opts: ProxyHostOptions) {
    const data: WorkerInit = {
      nats: opts.nats,
      node: opts.node,
      domain: opts.domain,
      gateway: opts.gateway,
      config: { ...opts.config, namePorts: [...opts.config.namePorts] },
      logBindings: opts.logBindings,
      lease: this.lease.buffer,
    };
    const isTs = opts.workerUrl.pathname.endsWith(".ts");
    this.worker = new Worker(opts.workerUrl, { workerData: data, ...(isTs ? { execArgv: ["--import", "tsx"] } : {}) });
    this.worker.on("message", (m: FromWorker) => {
      if (m.type === "ready") this.ready = true;
      if (m.type === "stats") {
        counters.setThread("proxy", m.counters);
        opts.onStats?.(m.stats);
      }
      if (m.type === "fatal") opts.onFatal(new Error(`proxy thread: ${m.error}`));
    });
    this.worker.on("error", (err) => opts.onFatal(err));
    this.worker.on("exit", (code) => {
      if (!this.stopped) opts.onFatal(new Error(`proxy thread exited with code ${code}`));
    });
  }

  /** The gateway's data-path verdict for its heartbeat. */
  probe(): { ok: boolean; detail?: string } {
    return this.ready ? { ok: true } : { ok: false, detail: "proxy starting" };
  }

  /**
   * The lease the proxy thread may act for (`leaseLeftMs` from now), into shared memory on every call; the
   * role itself (held or not, the term) as a message only when it changes.
   */
  role(proxy: boolean, term: number, leaseLeftMs: number): void {
    if (this.stopped) return;
    this.lease.set(proxy ? leaseLeftMs : 0);
    if (this.lastRole?.proxy === proxy && this.lastRole.term === term) return;
    this.lastRole = { proxy, term };
    this.worker.postMessage({ type: "role", proxy, term } satisfies ToWorker);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const done = new Promise<void>((resolve) => {
      this.worker.on("message", (m: FromWorker) => m.type === "stopped" && resolve());
      this.worker.once("exit", () => resolve());
    });
    this.worker.postMessage({ type: "stop" } satisfies ToWorker);
    await Promise.race([done, new Promise((r) => setTimeout(r, 2_000))]);
    await this.worker.terminate();
  }
}
