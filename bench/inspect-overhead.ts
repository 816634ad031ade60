// What mesh inspection costs an actor process: heartbeat throughput and CPU per heartbeat of a
// GatewayActorService driven flat out (each heartbeat = a TICK into the GatewayActor + encode + publish to a
// real nats-server), in four modes, interleaved over several rounds (medians reported):
//   off        no inspector at all (the code before mesh inspection)
//   idle       inspector attached (`attach`), no viewer: what every process pays while nobody watches
//   idle-createActor  the observer passed as createActor(m, { inspect }) instead, no viewer: always
//              subscribed, so xstate builds every inspection event (why the services use `attach`)
//   viewer     a viewer announces itself: TICKs that change nothing are sampled out
//   unsampled  a viewer, and sampling disabled: every TICK published (why the sampling exists)
// Also reports the nominal-rate CPU (heartbeats every gatewayHeartbeatMs, TICKs every sweepMs) in idle and
// viewer modes. Usage: npm run bench:inspect [-- --seconds 2 --rounds 3]
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { systemClock } from "../shared/clock";
import { defaultTimings } from "../shared/config";
import { createMeshInspector, type InspectorSettings } from "../shared/inspect";
import { silentLogger } from "../shared/log";
import { connectDaemon, type NatsConnection } from "../shared/nats";
import { encode, subjects } from "../shared/protocol";
import { createActor } from "xstate";
import { GatewayActorService } from "../services/gateway-actor/gateway";
import { gatewayMachine } from "../statecharts";
import { freePorts, waitForPort } from "../services/fleet/procs";

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "2" }, rounds: { type: "string", default: "3" } },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const DOMAIN = "bench";
const NODE = "bench-gw-1";

type Mode = "off" | "idle" | "idle-createActor" | "viewer" | "unsampled";
type Result = { perSec: number; cpuUsPerHb: number; published: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function withViewer<T>(nc: NatsConnection, on: boolean, fn: (count: () => number) => Promise<T>): Promise<T> {
  let published = 0;
  if (!on) return fn(() => 0);
  const sub = nc.subscribe(subjects.gatewayInspect(DOMAIN, NODE), { callback: () => void published++ });
  const announce = () =>
    nc.publish(
      subjects.inspectViewer(DOMAIN),
      encode("inspect.viewer", { viewer: "bench", sentAt: Date.now(), ttlMs: 3_000 }),
    );
  announce();
  const timer = setInterval(announce, 1_000);
  await nc.flush();
  await sleep(250); // the inspector hears the viewer and syncs
  try {
    return await fn(() => published);
  } finally {
    clearInterval(timer);
    sub.unsubscribe();
    await sleep(3_300); // the inspector notices the viewer is gone
  }
}

function makeService(nc: NatsConnection, mode: Mode) {
  const settings: Partial<InspectorSettings> | undefined =
    mode === "unsampled" ? { quietEvents: new Set() } : undefined;
  const inspector =
    mode === "off"
      ? null
      : createMeshInspector(nc, { actorSource: `gateway/${NODE}`, domain: DOMAIN, ...(settings ? { settings } : {}) });
  const service = new GatewayActorService({
    nc,
    node: NODE,
    domain: DOMAIN,
    gateway: "gw-bench",
    timings: { ...defaultTimings, gatewayHeartbeatMs: 60_000, sweepMs: 60_000 }, // only the loop drives it
    clock: systemClock,
    log: silentLogger(),
    onFatal: (err) => {
      throw err;
    },
  });
  if (inspector && mode === "idle-createActor") {
    // The same actor, created with the observer as an option (GatewayActorService attaches instead).
    const actor = createActor(gatewayMachine, {
      input: { node: NODE, drainTimeoutMs: 1_000, lapseHoldMs: 2_000 },
      inspect: inspector.inspect,
    });
    (service as unknown as { actor: unknown }).actor = actor;
  } else if (inspector) inspector.attach(service.actor);
  return { service, inspector };
}

async function flatOut(nc: NatsConnection, mode: Mode): Promise<Result> {
  const { service, inspector } = makeService(nc, mode);
  await nc.flush(); // the presence subscription is in place before a viewer announces
  service.start();
  try {
    return await withViewer(nc, mode === "viewer" || mode === "unsampled", async (published) => {
      let n = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const end = t0 + SECONDS * 1_000;
      while (performance.now() < end) {
        for (let i = 0; i < 200; i++) service.heartbeat();
        n += 200;
        await new Promise<void>((r) => setImmediate(r)); // let the connection flush and timers run
      }
      const elapsed = (performance.now() - t0) / 1_000;
      const cpu = process.cpuUsage(cpu0);
      await nc.flush();
      await sleep(200);
      return { perSec: n / elapsed, cpuUsPerHb: (cpu.user + cpu.system) / n, published: published() };
    });
  } finally {
    service.stop();
    inspector?.stop();
  }
}

/** CPU % of one core at the nominal rates (heartbeat every gatewayHeartbeatMs, TICK every sweepMs). */
async function nominal(nc: NatsConnection, mode: Mode, actors: number): Promise<number> {
  const made = Array.from({ length: actors }, (_, i) => {
    const inspector =
      mode === "off" ? null : createMeshInspector(nc, { actorSource: `gateway/${NODE}`, domain: DOMAIN });
    const service = new GatewayActorService({
      nc,
      node: `bench-gw-${i + 1}`,
      domain: DOMAIN,
      gateway: "gw-bench",
      timings: defaultTimings,
      clock: systemClock,
      log: silentLogger(),
      onFatal: (err) => {
        throw err;
      },
    });
    inspector?.attach(service.actor);
    return { service, inspector };
  });
  await nc.flush();
  for (const m of made) m.service.start();
  try {
    return await withViewer(nc, mode === "viewer", async () => {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await sleep(SECONDS * 1_000);
      const cpu = process.cpuUsage(cpu0);
      return ((cpu.user + cpu.system) / 1_000 / (performance.now() - t0)) * 100;
    });
  } finally {
    for (const m of made) {
      m.service.stop();
      m.inspector?.stop();
    }
  }
}

async function main() {
  const [port] = await freePorts(1);
  const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  try {
    await waitForPort(port!, 10_000);
    const nc = await connectDaemon(`nats://127.0.0.1:${port}`, "bench-inspect");
    const modes: Mode[] = ["off", "idle", "idle-createActor", "viewer", "unsampled"];
    const results = new Map<Mode, Result[]>(modes.map((m) => [m, []]));
    await flatOut(nc, "off"); // warm-up (JIT)
    for (let r = 0; r < ROUNDS; r++) {
      for (const m of modes) results.get(m)!.push(await flatOut(nc, m));
    }
    const base = median(results.get("off")!.map((x) => x.perSec));
    console.log(`heartbeat path flat out (TICK + encode + publish), ${ROUNDS} rounds x ${SECONDS} s, medians:`);
    console.log("mode              heartbeats/s   vs off   CPU µs/heartbeat   inspection batches received");
    for (const m of modes) {
      const rs = results.get(m)!;
      const perSec = median(rs.map((x) => x.perSec));
      console.log(
        `${m.padEnd(16)} ${perSec.toFixed(0).padStart(13)} ${((perSec / base) * 100).toFixed(1).padStart(7)} % ${median(
          rs.map((x) => x.cpuUsPerHb),
        )
          .toFixed(2)
          .padStart(18)} ${String(median(rs.map((x) => x.published))).padStart(29)}`,
      );
    }
    const ACTORS = 50;
    const idle = await nominal(nc, "idle", ACTORS);
    const viewer = await nominal(nc, "viewer", ACTORS);
    const off = await nominal(nc, "off", ACTORS);
    console.log(
      `\n${ACTORS} gateway actors in one process at nominal rates (hb ${defaultTimings.gatewayHeartbeatMs} ms, TICK ${defaultTimings.sweepMs} ms): CPU of one core: off ${off.toFixed(1)} %, idle inspector ${idle.toFixed(1)} %, viewer attached ${viewer.toFixed(1)} %`,
    );
    await nc.close();
  } finally {
    server.kill("SIGTERM");
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
