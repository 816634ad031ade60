// Load generator for bench:scale: simulates N domains x (2 gateway candidates + M other nodes) on one NATS
// connection. Registers every node (bounded concurrency, retried), then publishes node heartbeats at
// nodeHeartbeatMs and gateway heartbeats at gatewayHeartbeatMs, spread evenly over each period; a candidate
// reports itself active while the newest assignment for its Gateway names it. Prints JSON progress lines.
// A line `failovers R` on stdin starts forced failovers: R times a second an active candidate of another
// domain falls silent for gatewayDeadAfterMs + 1 s (its standby takes over; it comes back as the standby).
import { connect } from "@nats-io/transport-node";
import { parseFlags } from "../shared/args";
import { loadConfigFile } from "../shared/config";
import { runMain } from "../shared/process";
import { encode, subjects, tryDecode } from "../shared/protocol";
import { domainName, gatewayName, nodeName } from "./sim";

runMain(async () => {
  const parsed = parseFlags(process.argv.slice(2), "loadgen [options]", "Simulated fleet for bench:scale.", {
    nats: { type: "string", default: "nats://127.0.0.1:4222", help: "NATS URL" },
    domains: { type: "string", default: "1000", help: "domains" },
    "nodes-per-domain": {
      type: "string",
      default: "10",
      help: "nodes per domain, the first two are gateway candidates",
    },
    config: { type: "string", help: "Raven config JSON (timings)" },
  });
  if (!parsed) return;
  const { flags } = parsed;
  const timings = loadConfigFile(flags.config).timings;
  const D = Number(flags.domains);
  const N = Number(flags["nodes-per-domain"]);
  const nc = await connect({ servers: flags.nats!, maxReconnectAttempts: -1, name: "raven-loadgen" });
  const say = (o: object) => process.stdout.write(JSON.stringify(o) + "\n");
  // Never outlive the benchmark that started it: exit when reparented (the bench died) or its pipe breaks.
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && process.exit(0), 500).unref();
  process.stdout.on("error", () => process.exit(0));

  // Like a gateway actor: obey the highest term seen per Gateway, act active while named in it.
  const active = new Map<string, { term: number; nodes: Set<string> }>();
  const sub = nc.subscribe(subjects.allAssignments());
  void (async () => {
    for await (const m of sub) {
      const msg = tryDecode(m.data);
      if (msg?.type !== "assignment") continue;
      const prev = active.get(msg.body.gateway);
      if (prev && prev.term > msg.body.term) continue;
      active.set(msg.body.gateway, { term: msg.body.term, nodes: new Set(msg.body.active.map((e) => e.nodeName)) });
    }
  })();

  // Heartbeats: spread evenly over each period. Each tick sends what is due since the last one (a late
  // tick catches up), so a busy load generator never stretches a candidate's heartbeat period.
  const SLICE = 10;
  const gwSeq = new Int32Array(D * 2);
  const nodeSeq = new Int32Array(D * N);
  let gwCursor = 0;
  let nodeCursor = 0;
  const gwRate = (D * 2) / timings.gatewayHeartbeatMs; // per ms
  const nodeRate = (D * N) / timings.nodeHeartbeatMs;
  let gwDue = 0;
  let nodeDue = 0;
  let lastTick = performance.now();
  const registered = new Uint8Array(D * N);
  /** Candidate index -> silent until (performance.now()). */
  const silentUntil = new Float64Array(D * 2);
  let failoverTimer: NodeJS.Timeout | null = null;
  let failoverDomain = 0;
  const startFailovers = (perS: number) => {
    if (failoverTimer) clearInterval(failoverTimer);
    if (perS <= 0) return;
    failoverTimer = setInterval(() => {
      // The next domain with an active candidate that is heard: silence it.
      for (let tries = 0; tries < D; tries++) {
        const d = failoverDomain++ % D;
        const a = active.get(gatewayName(d));
        const idx = [0, 1].map((n) => d * 2 + n).find((i) => a?.nodes.has(nodeName(d, i % 2)));
        if (idx === undefined || silentUntil[idx]! > performance.now()) continue;
        silentUntil[idx] = performance.now() + timings.gatewayDeadAfterMs + 1_000;
        say({ silenced: nodeName(d, idx % 2) });
        return;
      }
    }, 1000 / perS);
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    for (const line of chunk.split("\n")) {
      const m = /^failovers (\d+(?:\.\d+)?)$/.exec(line.trim());
      if (m) startFailovers(Number(m[1]));
    }
  });
  setTimeout(() => say({ heartbeating: true }), 0);
  setInterval(() => {
    const now = Date.now();
    const tick = performance.now();
    gwDue += (tick - lastTick) * gwRate;
    nodeDue += (tick - lastTick) * nodeRate;
    lastTick = tick;
    const gwCount = Math.min(Math.floor(gwDue), D * 2);
    const nodeCount = Math.min(Math.floor(nodeDue), D * N);
    gwDue -= gwCount;
    nodeDue -= nodeCount;
    for (let i = 0; i < gwCount; i++) {
      const idx = gwCursor++ % (D * 2);
      if (silentUntil[idx]! > tick) continue;
      const d = Math.floor(idx / 2);
      const node = nodeName(d, idx % 2);
      const assignment = active.get(gatewayName(d));
      const acting = assignment?.nodes.has(node) ?? false;
      nc.publish(
        subjects.gatewayHeartbeat(domainName(d), node),
        encode("gw.hb", {
          node,
          domain: domainName(d),
          gateway: gatewayName(d),
          seq: ++gwSeq[idx]!,
          sentAt: now,
          term: assignment?.term ?? 0,
          active: acting ? ["proxy", "tunnel"] : [],
          leaseLeftMs: acting ? timings.gatewayFenceMs : 0,
          draining: false,
          datapathOk: true,
        }),
      );
    }
    for (let i = 0; i < nodeCount; i++) {
      const idx = nodeCursor++ % (D * N);
      if (!registered[idx]) continue;
      const d = Math.floor(idx / N);
      const node = nodeName(d, idx % N);
      nc.publish(
        subjects.nodeHeartbeat(domainName(d), node),
        encode("node.hb", { node, domain: domainName(d), seq: ++nodeSeq[idx]!, ready: true, sentAt: now }),
      );
    }
  }, SLICE);

  // Registrations, bounded concurrency, retried until answered.
  let next = 0;
  let done = 0;
  const register = async (): Promise<void> => {
    while (next < D * N) {
      const idx = next++;
      const d = Math.floor(idx / N);
      const node = nodeName(d, idx % N);
      const labels: Record<string, string> = {
        "apps.openyurt.io/nodepool": domainName(d),
        "raven.openyurt.io/gateway": gatewayName(d),
      };
      const body = {
        node,
        domain: domainName(d),
        labels,
        internalIP: `10.${Math.floor(d / 250)}.${d % 250}.${(idx % N) + 1}`,
        startedAt: Date.now(),
      };
      for (let attempt = 0; ; attempt++) {
        try {
          const reply = await nc.request(subjects.nodeRegister(domainName(d), node), encode("node.register", body), {
            timeout: 2_000,
          });
          if (tryDecode(reply.data)?.type === "node.registered") break;
        } catch {
          // shed or no coordinator yet: retry
        }
        await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)));
      }
      registered[idx] = 1;
      if (++done % 2_000 === 0) say({ registered: done });
    }
  };
  await Promise.all(Array.from({ length: 32 }, register));
  say({ registered: done, complete: true });
});
