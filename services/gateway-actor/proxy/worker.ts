// The proxy's own thread. Channels, TLS handshakes and the front doors run here, in a worker with its own
// event loop (and its own NATS connection for the Directory's KV watches), so that a burst of work on the
// data plane — hundreds of handshakes, a saturated relay — never delays the gateway's heartbeats and lease
// handling on the main thread: a stalled main loop would cost the gateway its lease and its role.
// Fencing (shared/fencing.ts) crosses the thread boundary as a lease: the main thread sends how long it may still act
// (`leaseLeftMs`, from its statechart); this thread stops serving when that runs out, even if no newer
// message arrives, so a stuck main thread fences the data plane too. Before judging the lease, this thread
// pulls any role message already queued for it (receiveMessageOnPort): when it is itself busy, its event loop
// may not have dispatched the fresh lease yet, and it must not mistake its own lag for the main thread's.
import { setPriority } from "node:os";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { systemClock } from "../../../shared/clock";
import { describeError } from "../../../shared/errors";
import { leaseRunning } from "../../../shared/fencing";
import { createLogger } from "../../../shared/log";
import { connectDaemon } from "../../../shared/nats";
import { ProxyEngine, type ProxyConfig, type ProxyStats } from "./engine";
import { NativeRelay } from "./native-relay";

export type WorkerInit = Readonly<{
  nats: string;
  node: string;
  domain: string;
  gateway: string;
  config: Omit<ProxyConfig, "namePorts"> & { namePorts: [number, number][] };
  logBindings: Record<string, string>;
}>;

const STATS_EVERY_MS = 1_000;
const DATA_PLANE_NICE = Number(process.env.RAVEN_NICE ?? 5);

export type ToWorker = { type: "role"; proxy: boolean; term: number; leaseLeftMs: number } | { type: "stop" };
export type FromWorker =
  | { type: "ready" }
  | { type: "stats"; stats: ProxyStats }
  | { type: "stopped" }
  | { type: "fatal"; error: string };

const init = workerData as WorkerInit;

// Control plane first: on Linux a nice value is per thread, and setPriority() with no pid applies to the
// calling thread, so this lowers the data plane only. When the machine is saturated (a burst of handshakes on
// a small box), the heartbeats, acknowledgements and the mesh keep the CPU they need for the gateway to keep
// its lease; the data plane takes what is left.
// The native relay's thread is started first, so that it keeps the process's own priority: it is where a
// channel's round trip is spent (a wakeup per hop), while this thread only opens channels.
NativeRelay.get();
try {
  setPriority(DATA_PLANE_NICE);
} catch {
  // Not permitted here (a container may forbid it): the thread split alone still isolates the event loops.
}
let role = { proxy: false, term: 0, until: 0 };
const log = createLogger({ ...init.logBindings, thread: "proxy" }, { term: () => role.term });

async function main(): Promise<void> {
  const nc = await connectDaemon(init.nats, `gateway-proxy/${init.node}`);
  const engine = new ProxyEngine({
    nc,
    node: init.node,
    domain: init.domain,
    gateway: init.gateway,
    config: { ...init.config, namePorts: new Map(init.config.namePorts) },
    clock: systemClock,
    log,
    role: () => {
      for (let m = receiveMessageOnPort(parentPort!); m; m = receiveMessageOnPort(parentPort!))
        onMessage(m.message as ToWorker);
      return { proxy: role.proxy, acting: role.proxy && leaseRunning(role.until, systemClock.now()), term: role.term };
    },
    onReady: () => parentPort!.postMessage({ type: "ready" } satisfies FromWorker),
  });
  let lastProxy = false;
  let leaseEnd: NodeJS.Timeout | null = null;
  function onMessage(m: ToWorker): void {
    if (m.type === "stop") {
      engine.stop();
      void nc.close().finally(() => parentPort!.postMessage({ type: "stopped" } satisfies FromWorker));
      return;
    }
    role = { proxy: m.proxy, term: m.term, until: systemClock.now() + m.leaseLeftMs };
    if (m.proxy !== lastProxy) queueMicrotask(() => engine.update());
    lastProxy = m.proxy;
    // A lease running out here takes effect without a message: the engine re-checks just past its end (and
    // channels ask `acting` themselves whenever they open).
    if (leaseEnd) clearTimeout(leaseEnd);
    leaseEnd = m.leaseLeftMs > 0 ? setTimeout(() => engine.update(), Math.ceil(m.leaseLeftMs) + 1).unref() : null;
  }
  parentPort!.on("message", onMessage);
  // Level-triggered besides: a slow re-check catches whatever no message announced.
  setInterval(() => engine.update(), 1_000).unref();
  setInterval(() => {
    const stats = engine.stats();
    if (stats) parentPort!.postMessage({ type: "stats", stats } satisfies FromWorker);
  }, STATS_EVERY_MS).unref();
  await engine.start();
}

main().catch((err) => {
  log.fatal({ err: describeError(err) }, "proxy thread failed");
  parentPort!.postMessage({ type: "fatal", error: describeError(err) } satisfies FromWorker);
});
