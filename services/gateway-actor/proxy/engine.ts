// ProxyEngine: proxy mode for one gateway candidate, level-triggered from the GatewayActor's role and the
// Directory. A candidate of an exposed (cloud) Gateway runs CloudProxy — the edge-facing TLS listener always,
// the front doors (HTTP proxy, name-routed ports) only while it acts active; any other candidate runs
// EdgeProxy, which keeps spares parked in the cloud, active or standby, and serves channels only while it acts
// active. Which side a candidate is on is read from its own Gateway record. The lifecycle (binding, waiting
// for the record, the side, the front doors opening and closing with the role, stopped) is a statechart,
// statecharts/proxy-engine.ts; this class provides its I/O.
import { readFileSync } from "node:fs";
import { createActor, fromPromise, type Actor } from "xstate";
import { proxyEngineMachine } from "../../../statecharts";
import { join } from "node:path";
import type { Clock } from "../../../shared/clock";
import { ConfigError, describeError } from "../../../shared/errors";
import { gatewayKey, soloKey, type Gateway } from "../../../shared/gateway";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import { bindBuckets, type NatsConnection } from "../../../shared/nats";
import type { ChannelTransport } from "./channels";
import { CloudProxy } from "./cloud";
import { Directory } from "../../../shared/directory";
import { EdgeProxy } from "./edge";
import { NameRoutedListener, ProxyFrontDoor } from "./front";

export type ProxyConfig = Readonly<{
  /** Directory with ca.crt, plus proxy.key/proxy.crt/secret on cloud candidates or `token` on edge ones. */
  pkiDir: string;
  /** Address the cloud listeners bind (edge-facing data port and front doors). */
  bindHost: string;
  dataPort: number;
  frontPort: number;
  /** Name-routed listeners: node port -> the port it listens on here. Empty: none. */
  namePorts: ReadonlyMap<number, number>;
  spares: number;
  /** Channel transport between gateways; "tcp" only where the underlay is already private or encrypted. */
  transport: ChannelTransport;
  openTimeoutMs: number;
  dialTimeoutMs: number;
  /** Forward proxy: how long a keep-alive channel may wait idle for its next request (below servers' idle timeouts). */
  idleChannelMs: number;
  /** Forward proxy: how long a request waits for the target's response head before it is answered 504. */
  responseTimeoutMs: number;
  retryMs: number;
}>;

export const defaultProxyConfig = (pkiDir: string): ProxyConfig => ({
  pkiDir,
  bindHost: "0.0.0.0",
  dataPort: 10262,
  frontPort: 10264,
  namePorts: new Map(),
  spares: 4,
  transport: "tls",
  openTimeoutMs: 5_000,
  dialTimeoutMs: 2_000,
  // Node's servers close an idle connection after 5 s, many others later; Go's never unless told to. A
  // server that closes sooner is still safe: the channel ends with it (front.ts), and a request that raced
  // the close is retried or answered at once.
  idleChannelMs: 4_000,
  responseTimeoutMs: 30_000,
  retryMs: 200,
});

export type ProxyStats = {
  side: "cloud" | "edge";
  /** The proxy links: spare connections per cloud peer (edge), connected edge peers (cloud). */
  links: { peer: string; state: string; spares: number }[];
  channelsOpen: number;
  channelsOpened: number;
  bytesIn: number;
  bytesOut: number;
  errors: number;
};

/** This thread's channel counters (the proxy thread has its own, apart from the main thread's). */
function channelTotals(): Pick<ProxyStats, "channelsOpened" | "bytesIn" | "bytesOut" | "errors"> {
  let bytesIn = 0;
  let bytesOut = 0;
  for (const e of counters.entries()) {
    if (e.name !== "raven_channel_bytes_total") continue;
    if (e.labels.direction === "in") bytesIn += e.value;
    else bytesOut += e.value;
  }
  return {
    channelsOpened: counters.total("raven_channels_opened_total"),
    bytesIn,
    bytesOut,
    errors: counters.total("raven_channel_errors_total"),
  };
}

export type ProxyEngineOptions = Readonly<{
  nc: NatsConnection;
  node: string;
  domain: string;
  gateway: string;
  config: ProxyConfig;
  clock: Clock;
  log: Logger;
  /** `proxy`: the role is held (keep spares, listeners, channels); `acting`: its lease is valid (open channels). */
  role: () => { proxy: boolean; acting: boolean; term: number };
  /** Called once, when this side of the proxy can serve: its own record is known and, on a cloud
   * candidate, the edge-facing listener is up. */
  onReady?: () => void;
}>;

function readPki(dir: string, file: string): Buffer {
  try {
    return readFileSync(join(dir, file));
  } catch (err) {
    throw readPkiError(dir, file, err);
  }
}

/** The domain's token: `token` (a directory made for one domain, as the fleet's), or `token-<domain>` (a
 * Secret holding several, as deploy/'s edge agents mount). */
function readToken(dir: string, domain: string): string {
  for (const file of ["token", `token-${domain}`]) {
    try {
      return readFileSync(join(dir, file), "utf8").trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw readPkiError(dir, file, err);
    }
  }
  throw new ConfigError("--proxy-pki", `${dir} holds neither token nor token-${domain}`);
}

function readPkiError(dir: string, file: string, err: unknown): ConfigError {
  return new ConfigError("--proxy-pki", `cannot read ${join(dir, file)}: ${describeError(err)}`, { cause: err });
}

export class ProxyEngine {
  directory: Directory | null = null;
  cloud: CloudProxy | null = null;
  edge: EdgeProxy | null = null;
  private doors: { front: ProxyFrontDoor; names: NameRoutedListener[] } | null = null;
  private isReady = false;
  /** The lifecycle (statecharts/proxy-engine.ts): which side runs, whether the front doors are open. */
  private readonly actor: Actor<typeof proxyEngineMachine>;

  constructor(private readonly opts: ProxyEngineOptions) {
    this.actor = createActor(
      proxyEngineMachine.provide({
        actions: {
          startCloud: () => this.startCloud(),
          startEdge: () => this.startEdge(),
          updateEdge: () => {
            this.edge?.update();
            this.ready();
          },
          stopEdge: () => {
            this.edge?.stop();
            this.edge = null;
          },
          stopCloud: () => {
            this.closeDoors();
            this.cloud?.stop();
            this.cloud = null;
          },
          closeDoors: () => this.closeDoors(),
          prune: () => this.cloud?.prune(),
          stopAll: () => {
            this.closeDoors();
            this.edge?.stop();
            this.cloud?.stop();
            this.directory?.stop();
          },
        },
        actors: { openDoors: fromPromise(({ signal }) => this.openDoors(signal)) },
      }),
    );
    this.actor.subscribe({
      error: (err) => opts.log.error({ err: describeError(err) }, "proxy engine statechart failed"),
    });
    this.actor.start();
  }

  private ready(): void {
    if (this.isReady) return;
    this.isReady = true;
    this.opts.onReady?.();
  }

  async start(): Promise<void> {
    const { opts } = this;
    readPki(opts.config.pkiDir, "ca.crt"); // fail at start, with the path, rather than on first use
    for (;;) {
      try {
        const buckets = await bindBuckets(opts.nc, 2_000);
        this.directory = new Directory(buckets, opts.clock, opts.log);
        break;
      } catch (err) {
        if (this.actor.getSnapshot().status !== "active") return;
        opts.log.warn({ err: describeError(err) }, "proxy: KV not reachable yet; retrying");
        await new Promise((r) => opts.clock.setTimeout(() => r(undefined), 500));
      }
    }
    this.directory.onChange(() => this.update());
    this.directory.start();
    this.actor.send({ type: "BOUND" });
  }

  /** What the proxy is doing, for the gateway's `gw.proxy` report: its peer links and channel totals. */
  stats(): ProxyStats | null {
    if (this.edge) {
      return { side: "edge", links: this.edge.links(), channelsOpen: this.edge.channels.size, ...channelTotals() };
    }
    if (this.cloud) {
      return { side: "cloud", links: this.cloud.peers(), channelsOpen: this.cloud.channels.size, ...channelTotals() };
    }
    return null;
  }

  ownRecord(): Gateway | undefined {
    const d = this.directory;
    if (!d) return undefined;
    return (
      d.record(gatewayKey(this.opts.gateway)) ??
      (this.opts.gateway === this.opts.node ? d.record(soloKey(this.opts.node)) : undefined)
    );
  }

  /** Level-triggered: cheap, called on every role change, heartbeat and directory change. */
  update(): void {
    const own = this.ownRecord();
    const side = own ? (own.spec.exposeType !== "" ? "cloud" : "edge") : null;
    try {
      this.actor.send({ type: "UPDATE", side, active: this.opts.role().proxy });
    } catch (err) {
      this.opts.log.error({ err: describeError(err) }, "proxy engine update failed");
    }
  }

  private startCloud(): void {
    const { opts } = this;
    const cfg = opts.config;
    this.cloud = new CloudProxy({
      node: opts.node,
      domain: opts.domain,
      directory: this.directory!,
      key: readPki(cfg.pkiDir, "proxy.key"),
      cert: readPki(cfg.pkiDir, "proxy.crt"),
      secret: readPki(cfg.pkiDir, "secret").toString("utf8").trim(),
      transport: cfg.transport,
      listen: { host: cfg.bindHost, port: cfg.dataPort },
      openTimeoutMs: cfg.openTimeoutMs,
      dialTimeoutMs: cfg.dialTimeoutMs,
      clock: opts.clock,
      log: opts.log.child({ part: "proxy-cloud" }),
      role: opts.role,
    });
    this.cloud.start().then(
      () => {
        opts.log.info({ listen: this.cloud?.address }, "proxy: edge-facing listener up");
        this.ready();
      },
      (err) => opts.log.error({ err: describeError(err) }, "proxy: edge-facing listener failed"),
    );
  }

  /** The front doors' listeners; if the machine left `opening` meanwhile (stopped), they close again. */
  private async openDoors(signal: AbortSignal): Promise<void> {
    const { opts } = this;
    const cfg = opts.config;
    const front = new ProxyFrontDoor(this.cloud!, opts.log.child({ part: "proxy-front" }), {
      idleChannelMs: cfg.idleChannelMs,
      responseTimeoutMs: cfg.responseTimeoutMs,
    });
    const names = [...cfg.namePorts].map(
      ([target]) => new NameRoutedListener(this.cloud!, target, opts.log.child({ part: "proxy-names" })),
    );
    const close = () => {
      front.close();
      for (const n of names) n.close();
    };
    try {
      const frontPort = await front.listen(cfg.bindHost, cfg.frontPort);
      const ports = await Promise.all(names.map((n) => n.listen(cfg.bindHost, cfg.namePorts.get(n.targetPort)!)));
      if (signal.aborted) return close();
      this.doors = { front, names };
      opts.log.info({ host: cfg.bindHost, frontPort, namePorts: ports }, "proxy: front doors open");
    } catch (err) {
      close();
      opts.log.error({ err: describeError(err) }, "proxy: front doors failed to open; retrying on the next update");
      throw err;
    }
  }

  private closeDoors(): void {
    if (!this.doors) return;
    this.doors.front.close();
    for (const n of this.doors.names) n.close();
    this.doors = null;
    this.opts.log.info("proxy: front doors closed");
  }

  private startEdge(): void {
    const { opts } = this;
    const cfg = opts.config;
    this.edge = new EdgeProxy({
      node: opts.node,
      domain: opts.domain,
      gateway: opts.gateway,
      directory: this.directory!,
      ca: readPki(cfg.pkiDir, "ca.crt"),
      transport: cfg.transport,
      token: readToken(cfg.pkiDir, opts.domain),
      spares: cfg.spares,
      dialTimeoutMs: cfg.dialTimeoutMs,
      retryMs: cfg.retryMs,
      clock: opts.clock,
      log: opts.log.child({ part: "proxy-edge" }),
      role: opts.role,
    });
  }

  stop(): void {
    this.actor.send({ type: "STOP" });
  }
}
