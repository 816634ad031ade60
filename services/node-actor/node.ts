// NodeActorService: a node's membership on the mesh. The NodeActor statechart registers (request to the
// coordinator, retried with backoff) and re-registers after every reconnect; while it is `registered`, a
// plain timer publishes the node heartbeat.
import { createActor, fromPromise, type Actor } from "xstate";
import { nodeMachine, type Registration } from "../../statecharts";
import type { Clock, TimerHandle } from "../../shared/clock";
import type { ActorInspector } from "../../shared/inspect";
import type { Timings } from "../../shared/config";
import type { NodeFacts } from "../../shared/domains";
import { MeshUnavailableError, describeError, errorFromWire } from "../../shared/errors";
import type { Logger } from "../../shared/log";
import { counters } from "../../shared/metrics";
import type { NatsConnection } from "../../shared/nats";
import { decode, encode, subjects } from "../../shared/protocol";

export type NodeActorOptions = Readonly<{
  nc: NatsConnection;
  facts: NodeFacts;
  domain: string;
  timings: Timings;
  clock: Clock;
  log: Logger;
  /** The node's own readiness (kubelet-like); true by default. */
  ready?: () => boolean;
  /** The statechart failed: the entrypoint exits so that a supervisor restarts the node actor. */
  onFatal: (err: unknown) => void;
  /** Mesh inspection (shared/inspect.ts), for `raven ui`. */
  inspector?: ActorInspector;
}>;

export class NodeActorService {
  readonly actor: Actor<typeof nodeMachine>;
  private seq = 0;
  private timer: TimerHandle | null = null;
  private stopped = false;

  constructor(private readonly opts: NodeActorOptions) {
    const { nc, facts, domain, clock } = opts;
    const machine = nodeMachine.provide({
      actors: {
        register: fromPromise<Registration, { node: string; domain: string }>(async () => {
          const body = {
            node: facts.name,
            domain,
            labels: { ...facts.labels },
            internalIP: facts.internalIP,
            ...(facts.podCIDR ? { podCIDR: facts.podCIDR } : {}),
            startedAt: clock.wallMs(),
          };
          let reply;
          try {
            reply = await nc.request(subjects.nodeRegister(domain, facts.name), encode("node.register", body), {
              timeout: 1_000,
            });
          } catch (err) {
            throw new MeshUnavailableError(`no coordinator answered the registration: ${describeError(err)}`, {
              cause: err,
            });
          }
          const msg = decode(reply.data);
          if (msg.type === "error") throw errorFromWire(msg.body);
          if (msg.type !== "node.registered") throw new MeshUnavailableError(`unexpected reply ${msg.type}`);
          return { gateway: msg.body.gateway, solo: msg.body.solo };
        }),
      },
    });
    this.actor = createActor(machine, {
      clock: opts.clock,
      input: { node: facts.name, domain, retryMs: opts.timings.retryMs },
    });
    opts.inspector?.attach(this.actor);
  }

  start(): void {
    const { clock, timings, log, nc } = this.opts;
    let last: unknown = null;
    this.actor.subscribe({
      next: (snap) => {
        if (snap.value === last) return;
        last = snap.value;
        log.info(
          { state: snap.value, registration: snap.context.registration, error: snap.context.lastError ?? undefined },
          "node state",
        );
        if (snap.value === "registered") this.heartbeat();
      },
      error: (err) => {
        log.fatal({ err: describeError(err) }, "node statechart failed");
        this.opts.onFatal(err);
      },
    });
    this.actor.start();
    this.timer = clock.setInterval(() => this.heartbeat(), timings.nodeHeartbeatMs);
    void (async () => {
      for await (const s of nc.status()) {
        if (this.stopped) break;
        if (s.type === "disconnect") this.actor.send({ type: "DISCONNECTED" });
        else if (s.type === "reconnect") this.actor.send({ type: "CONNECTED" });
      }
    })();
  }

  private heartbeat(): void {
    if (this.actor.getSnapshot().value !== "registered") return;
    const { nc, facts, domain, clock } = this.opts;
    const body = {
      node: facts.name,
      domain,
      seq: ++this.seq,
      ready: this.opts.ready?.() ?? true,
      sentAt: clock.wallMs(),
    };
    try {
      nc.publish(subjects.nodeHeartbeat(domain, facts.name), encode("node.hb", body));
    } catch {
      counters.inc("raven_publish_errors_total");
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.opts.clock.clearInterval(this.timer);
    this.actor.stop();
  }
}
