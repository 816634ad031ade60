// What the fleet launcher waits for while it starts the fleet, seen from outside through the mesh: an active
// coordinator, a batch of gateway candidates heartbeating, a batch of nodes ready, every domain elected. Each
// wait opens its own connection to the hub and closes it, and fails with a MeshUnavailableError that says what
// was still missing and where the logs are.
import { join } from "node:path";
import { MeshUnavailableError, describeError } from "../../shared/errors";
import { requestStatus, type NatsConnection } from "../../shared/nats";
import { pollUntil } from "../../shared/poll";
import { subjects, type StatusReply } from "../../shared/protocol";
import { partitionOf, type Topology } from "../../shared/topology";

export type ActorInfo = Readonly<{ name: string; node: string; domain: string; gateway?: string }>;

export type ReadinessOptions = Readonly<{
  connect: () => Promise<NatsConnection>;
  topology: Topology;
  runDir: string;
  progress: (line: string) => void;
}>;

export class FleetReadiness {
  private lastStatusError = "";

  constructor(private readonly o: ReadinessOptions) {}

  /** Asks the active coordinator for the fleet status (null when none answers in time). */
  async status(nc: NatsConnection, timeoutMs = 1_000): Promise<StatusReply | null> {
    try {
      return await requestStatus(nc, { timeoutMs });
    } catch (err) {
      this.lastStatusError = describeError(err);
      return null;
    }
  }

  async waitCoordinator(timeoutMs: number): Promise<void> {
    const nc = await this.o.connect();
    try {
      await pollUntil("an active coordinator", timeoutMs, () => this.status(nc), {
        everyMs: 50,
        error: () =>
          new MeshUnavailableError(
            `no coordinator became active within ${timeoutMs} ms (${this.lastStatusError}); see ${join(this.o.runDir, "logs")}`,
          ),
      });
    } finally {
      await nc.close();
    }
  }

  /** Resolves when every one of these gateway candidates has sent a heartbeat. */
  async waitHeartbeats(actors: ActorInfo[], timeoutMs: number): Promise<void> {
    const nc = await this.o.connect();
    const missing = new Set(actors.map((a) => subjects.gatewayHeartbeat(a.domain, a.node)));
    const sub = nc.subscribe(subjects.allGatewayHeartbeats());
    const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
    try {
      for await (const m of sub) {
        missing.delete(m.subject);
        if (missing.size === 0) return;
      }
      throw new MeshUnavailableError(
        `no heartbeat from gateway candidate(s) ${actors
          .filter((a) => missing.has(subjects.gatewayHeartbeat(a.domain, a.node)))
          .map((a) => a.name)
          .join(", ")} within ${timeoutMs} ms`,
      );
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
      await nc.close();
    }
  }

  /** Resolves when the coordinator reports every one of these nodes ready. */
  async waitNodesReady(nodes: string[], timeoutMs: number): Promise<void> {
    const nc = await this.o.connect();
    let missing = nodes;
    try {
      await pollUntil(
        "the nodes to be ready",
        timeoutMs,
        async () => {
          const st = await this.status(nc);
          if (!st) return false;
          const ready = new Set(st.domains.flatMap((d) => d.nodes.filter((n) => n.ready).map((n) => n.node)));
          missing = nodes.filter((n) => !ready.has(n));
          return missing.length === 0;
        },
        {
          error: () => new MeshUnavailableError(`node actor(s) ${missing.join(", ")} not ready after ${timeoutMs} ms`),
        },
      );
    } finally {
      await nc.close();
    }
  }

  /** Resolves when every unit with candidates has every wanted replica active and every node is ready. */
  async waitElected(timeoutMs: number): Promise<StatusReply> {
    const nc = await this.o.connect();
    const expectedUnits = partitionOf(this.o.topology).units.size;
    let last = "no coordinator answered yet";
    let reported = Date.now();
    try {
      return await pollUntil(
        "every unit elected and every node ready",
        timeoutMs,
        async () => {
          if (Date.now() - reported > 2_000) {
            this.o.progress(`      waiting: ${last} (${this.lastStatusError})`);
            reported = Date.now();
          }
          const st = await this.status(nc);
          if (!st) return false;
          const missing = st.domains.filter((d) => d.active.length === 0 || d.nodes.some((n) => !n.ready));
          const nodes = st.domains.reduce((sum, d) => sum + d.nodes.length, 0);
          if (st.domains.length >= expectedUnits && nodes >= this.o.topology.nodes.length && missing.length === 0)
            return st;
          last = `${st.domains.length}/${expectedUnits} units known; waiting for ${missing.map((d) => d.gateway).join(", ") || "registrations"}`;
          return false;
        },
        {
          error: () =>
            new MeshUnavailableError(
              `fleet not ready after ${timeoutMs} ms: ${last}; see ${join(this.o.runDir, "logs")}`,
            ),
        },
      );
    } finally {
      await nc.close();
    }
  }
}
