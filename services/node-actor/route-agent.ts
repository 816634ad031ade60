// A node's tunnel-mode routes (NodeActor's data-path duty): the VXLAN device toward its domain's active
// gateway and the routes for the other domains' pod CIDRs through it — or, on the active gateway itself,
// the local nodes' pod CIDRs back over VXLAN. Computed from the fleet's records (lib/tunnel/facts.ts,
// computeRoutes) and applied by a route driver (RouteDriver) in the node's host-network namespace.
//
// Guarantees:
// - Level-triggered: every Directory change and a periodic resync recompute the desired state; the driver
//   changes only what differs (a resync that finds nothing to do touches nothing, and repairs drift). With
//   a driver that watches its namespace, a link or route change there is a resync too, driftDebounceMs
//   later (one for a burst, and late enough not to compete with a failover's own steps): drift (a VPN
//   device recreated without the routes into it) is repaired then, not at the next periodic resync.
// - One apply at a time (shared/serial.ts); changes that arrive meanwhile coalesce into one more run after.
// - Failover needs no manual action: a new term's record names the new gateway and the next run repoints
//   (the driver is make-before-break). While the domain has no active gateway the last routes stay.
// - A failed apply is retried after retryMs; an invalid desired state (a TunnelError from computeRoutes) is
//   logged and counted once per distinct message, and waits for the records to change.
import type { Clock, TimerHandle } from "../../shared/clock";
import type { Directory } from "../../shared/directory";
import { describeError } from "../../shared/errors";
import { SerialTask } from "../../shared/serial";
import type { Logger } from "../../shared/log";
import { counters } from "../../shared/metrics";
import { computeRoutes, type RouteDesired } from "../../lib/vxlan";
import { routeInputOf, tunnelDomains } from "../../lib/tunnel";

export type RouteDriverLike = {
  apply(desired: RouteDesired): Promise<string[]>;
  cleanup(): Promise<void>;
  /** Releases what the driver holds open (RouteDriver: its netlink socket); the kernel state stays. */
  close?(): void;
  /** Reports changes in the namespace until the returned function is called (RouteDriver: an rtnetlink monitor). */
  watch?(onChange: () => void): () => void;
};

export type RouteAgentOptions = Readonly<{
  directory: Pick<Directory, "gateways" | "nodeRecords" | "onChange">;
  node: string;
  domain: string;
  driver: RouteDriverLike;
  link: Readonly<{ underlayMtu: number; vpnOverheadBytes: number; tunnelDev?: string | null }>;
  clock: Clock;
  log: Logger;
  retryMs: number;
  resyncMs: number;
  /**
   * How long after a change in the namespace the resync runs (default 1 s). A failover changes routes too
   * (the old gateway's charon and TUN go away); 250 ms put those resyncs' reads into the next failover
   * steps and cost ~25 ms of its p50 in bench:tunnel, 1 s costs nothing measurable.
   */
  driftDebounceMs?: number;
}>;

export type RouteAgentStatus = Readonly<{
  role: "node" | "gateway" | null;
  gatewayIP: string | null;
  applies: number;
  lastError: string | null;
}>;

export class RouteAgent {
  private readonly task = new SerialTask(() => this.run());
  private stopped = false;
  private lastKey = "";
  private lastProblem = "";
  private retry: TimerHandle | null = null;
  private resync: TimerHandle | null = null;
  private unsubscribe: (() => void) | null = null;
  private unwatch: (() => void) | null = null;
  private drift: TimerHandle | null = null;
  private state: {
    role: "node" | "gateway" | null;
    gatewayIP: string | null;
    applies: number;
    lastError: string | null;
  } = {
    role: null,
    gatewayIP: null,
    applies: 0,
    lastError: null,
  };

  constructor(private readonly opts: RouteAgentOptions) {}

  start(): void {
    this.unsubscribe = this.opts.directory.onChange(() => this.kick());
    this.unwatch = this.opts.driver.watch?.(() => this.onDrift()) ?? null;
    this.resync = this.opts.clock.setInterval(() => this.kick(true), this.opts.resyncMs);
    this.kick();
  }

  private onDrift(): void {
    if (this.drift !== null || this.stopped) return;
    this.drift = this.opts.clock.setTimeout(() => {
      this.drift = null;
      this.kick(true);
    }, this.opts.driftDebounceMs ?? 1_000);
  }

  status(): RouteAgentStatus {
    return { ...this.state };
  }

  /** Recomputes and applies; `force` applies even when the desired state is unchanged (drift repair). */
  kick(force = false): void {
    if (this.stopped) return;
    if (force) this.lastKey = "";
    this.task.request();
  }

  private async run(): Promise<void> {
    const { opts } = this;
    const domains = tunnelDomains(opts.directory.gateways(), opts.directory.nodeRecords());
    const input = routeInputOf(domains, { domain: opts.domain, node: opts.node }, opts.link);
    if (input === null) return; // no active gateway on the LAN yet (or not registered): keep what is there
    let desired: RouteDesired;
    try {
      desired = computeRoutes(input);
    } catch (err) {
      const message = describeError(err);
      if (message !== this.lastProblem) {
        this.lastProblem = message;
        counters.inc("raven_tunnel_route_errors_total", { reason: "invalid" });
        opts.log.warn({ err: message }, "tunnel routes: desired state refused");
      }
      this.state.lastError = message;
      return;
    }
    const key = JSON.stringify(desired);
    if (key === this.lastKey) return;
    try {
      const changes = await opts.driver.apply(desired);
      this.lastKey = key;
      this.lastProblem = "";
      const moved = this.state.gatewayIP !== input.gatewayIP || this.state.role !== input.role;
      this.state = { role: input.role, gatewayIP: input.gatewayIP, applies: this.state.applies + 1, lastError: null };
      if (changes.length > 0) {
        opts.log[moved ? "info" : "debug"](
          { role: input.role, gateway: input.gatewayIP, changes },
          moved ? "tunnel routes point to the active gateway" : "tunnel routes updated",
        );
      }
    } catch (err) {
      this.state.lastError = describeError(err);
      counters.inc("raven_tunnel_route_errors_total", { reason: "apply" });
      opts.log.warn({ err: this.state.lastError }, "tunnel routes: apply failed; retrying");
      if (this.retry === null && !this.stopped) {
        this.retry = opts.clock.setTimeout(() => {
          this.retry = null;
          this.kick();
        }, opts.retryMs);
      }
    }
  }

  /** Stops reacting; `cleanup` also removes the device and routes (a node leaving tunnel mode). */
  async stop(cleanup = false): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.unwatch?.();
    if (this.drift) this.opts.clock.clearTimeout(this.drift);
    if (this.retry) this.opts.clock.clearTimeout(this.retry);
    if (this.resync) this.opts.clock.clearInterval(this.resync);
    await this.task.stop();
    if (cleanup) await this.opts.driver.cleanup();
    this.opts.driver.close?.();
  }
}
