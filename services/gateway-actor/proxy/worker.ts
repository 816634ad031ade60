// The proxy's own thread. Channels, TLS handshakes and the front doors run here, in a worker with its own
// event loop (and its own NATS connection for the Directory's KV watches), so that a burst of work on the
// data plane — hundreds of handshakes, a saturated relay — never delays the gateway's heartbeats and lease
// handling on the main thread: a stalled main loop would cost the gateway its lease and its role.
// Fencing (shared/fencing.ts) crosses the thread boundary as a lease: the main thread writes when it may
// act until into shared memory on every heartbeat (lease-cell.ts), and this thread reads it whenever a channel
// opens, so it stops serving when the lease runs out even if the main thread is stuck and writes nothing
// more: a stuck main thread fences the data plane too. The role itself (held or not, the term) comes as a
// message when it changes; before judging, this thread pulls any role message already queued for it
// (receiveMessageOnPort): when it is itself busy, its event loop may not have dispatched it yet.
import { setPriority } from "node:os";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { systemClock } from "../../../shared/clock";
import { describeError } from "../../../shared/errors";
import { createLogger } from "../../../shared/log";
import { counters, type CounterEntry } from "../../../shared/metrics";
import { connectDaemon } from "../../../shared/nats";
import { ProxyEngine, type ProxyConfig, type ProxyStats } from "./engine";
import { NativeRelay } from "./native-relay";
import { LeaseCell } from "./lease-cell";

export type WorkerInit = Readonly<{
  nats: string;
  node: string;
  domain: string;
  gateway: string;
  config: Omit<ProxyConfig, "namePorts"> & { namePorts: [number, number][] };
  logBindings: Record<string, string>;
  /** The lease, shared with the main thread (lease-cell.ts). */
  lease: SharedArrayBuffer;
}>;

const STATS_EVERY_MS = 1_000;
const DATA_PLANE_NICE = Number(process.env.RAVEN_NICE ?? 5);

export type ToWorker = { type: "role"; proxy: boolean; term: number } | { type: "stop" };
export type FromWorker =
  | { type: "ready" }
  /** `counters`: this thread's, for the main thread's /metrics (a registry is per thread). */
  | { type: "stats"; stats: ProxyStats; counters: CounterEntry[] }
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
let role = { proxy: false, term: 0 };
const lease = new LeaseCell(init.lease);
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
      return { proxy: role.proxy, acting: role.proxy && lease.running(), term: role.term };
    },
    onReady: () => parentPort!.postMessage({ type: "ready" } satisfies FromWorker),
  });
  let lastProxy = false;
  function onMessage(m: ToWorker): void {
    if (m.type === "stop") {
      engine.stop();
      void nc.close().finally(() => parentPort!.postMessage({ type: "stopped" } satisfies FromWorker));
      return;
    }
    role = { proxy: m.proxy, term: m.term };
    if (m.proxy !== lastProxy) queueMicrotask(() => engine.update());
    lastProxy = m.proxy;
    // The lease needs no message: channels read it (`acting`) whenever they open, from shared memory.
  }
  parentPort!.on("message", onMessage);
  // Level-triggered besides: a slow re-check catches whatever no message announced. The same wake-up sends
  // the stats (one timer, not two: an idle gateway's cost is its wake-ups).
  setInterval(() => {
    engine.update();
    const stats = engine.stats();
    if (stats) parentPort!.postMessage({ type: "stats", stats, counters: counters.own() } satisfies FromWorker);
  }, STATS_EVERY_MS).unref();
  await engine.start();
}

main().catch((err) => {
  log.fatal({ err: describeError(err) }, "proxy thread failed");
  parentPort!.postMessage({ type: "fatal", error: describeError(err) } satisfies FromWorker);
});
