// Measurement kit for bench:proxy: target servers (a byte-counting sink and a 64-byte echo), the three
// measurements (bulk throughput, request/response RTT on one kept-alive connection, connection rate), an
// HTTP CONNECT client, and the printing every path shares. A path under test is nothing but a pair of
// dialers, one reaching the sink and one reaching the echo server, so direct TCP, an ssh reverse tunnel and
// the Raven proxy are measured by the same code.
// Measurements never overlap: each one owns the sockets it dials and destroys them before it returns.
// Over 400 lines, one concept: the kit every path of bench:proxy is measured with, so that no path has its own.
import { spawn, type ChildProcess } from "node:child_process";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { ErrorCode, RavenError } from "../shared/errors";
import { percentile } from "./proc-stats";

/** Returns a socket already connected, end to end, to one target. */
export type Dial = () => Promise<Socket>;

/** One path under test: how to reach the sink and how to reach the echo server through it. */
export type PathDialers = Readonly<{ sink: Dial; echo: Dial }>;

export type Rtt = Readonly<{ p50_us: number; p99_us: number }>;

export type PathResult = Readonly<{ label: string; bulkMBps: number; rtt: Rtt; connPerS: number }>;

export const GIB = 1024 ** 3;
export const MIB = 1024 ** 2;
/** Size of one echo request and of its answer. */
export const ECHO_BYTES = 64;
/** A measurement fails instead of hanging when its path makes no progress for this long. */
const IDLE_TIMEOUT_MS = 30_000;
/** Bulk writes: large enough that per-write overhead vanishes, small enough to keep backpressure honest. */
const BULK_CHUNK_BYTES = 256 * 1024;

/** The path under measurement broke, stalled or handed back different bytes than it was given. */
export class PathError extends RavenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Internal, message, options);
    this.name = "PathError";
  }
}

/** An HTTP CONNECT proxy answered with something other than 200; `statusLine` is its first line. */
export class ProxyConnectError extends RavenError {
  constructor(
    readonly target: string,
    readonly statusLine: string,
    message: string,
  ) {
    super(ErrorCode.Rejected, message);
    this.name = "ProxyConnectError";
  }
}

// ---- targets ------------------------------------------------------------------------------------------

export type Targets = Readonly<{ host: string; sinkPort: number; echoPort: number; close(): Promise<void> }>;

/**
 * Starts the sink (counts every byte; when the client half-closes, replies with the count in ASCII and ends)
 * and the echo server (answers every whole 64-byte request with those 64 bytes, in order) on `host`.
 * Port 0 or absent = a free port.
 */
export async function startTargets(host = "127.0.0.1", ports: { sink?: number; echo?: number } = {}): Promise<Targets> {
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
    s.on("error", () => {}); // a client that resets is not the target's problem
  };
  const sink = createServer({ allowHalfOpen: true }, (s) => {
    track(s);
    let count = 0;
    s.on("data", (b: Buffer) => {
      count += b.length;
    });
    s.on("end", () => s.end(String(count)));
  });
  const echo = createServer((s) => {
    track(s);
    s.setNoDelay(true);
    let partial: Buffer | null = null; // bytes of a request not yet complete (< 64)
    s.on("data", (b: Buffer) => {
      const buf = partial ? Buffer.concat([partial, b]) : b;
      const whole = buf.length - (buf.length % ECHO_BYTES);
      partial = whole < buf.length ? Buffer.from(buf.subarray(whole)) : null;
      if (whole > 0) s.write(whole === buf.length ? buf : buf.subarray(0, whole));
    });
  });
  const listen = (server: Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve((server.address() as { port: number }).port);
      });
    });
  const closeAll = async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(
      [sink, echo].map((srv) => new Promise<void>((r) => (srv.listening ? srv.close(() => r()) : r()))),
    );
  };
  try {
    const sinkPort = await listen(sink, ports.sink ?? 0);
    const echoPort = await listen(echo, ports.echo ?? 0);
    return { host, sinkPort, echoPort, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

export type TargetsProcess = Readonly<{
  host: string;
  sinkPort: number;
  echoPort: number;
  pid: number;
  stop(): Promise<void>;
}>;

const TARGETS_ENTRY = fileURLToPath(new URL("./targets.ts", import.meta.url));
const RELAY_ENTRY = fileURLToPath(new URL("./relay.ts", import.meta.url));

/**
 * Runs bench/targets.ts as its own process, optionally behind a command prefix such as
 * `["ip", "netns", "exec", "edge"]` (which execs, so the PID is node's). The child exits when its stdin
 * pipe closes, so it never outlives this process; stop() closes the pipe and kills it by PID.
 */
export function startTargetsProcess(
  opts: { host?: string; sinkPort?: number; echoPort?: number; prefix?: string[]; timeoutMs?: number } = {},
): Promise<TargetsProcess> {
  const args = [
    TARGETS_ENTRY,
    "--host",
    opts.host ?? "127.0.0.1",
    "--sink-port",
    String(opts.sinkPort ?? 0),
    "--echo-port",
    String(opts.echoPort ?? 0),
  ];
  return startBenchProcess("targets", args, opts.prefix ?? [], opts.timeoutMs ?? 15_000);
}

/** Runs bench/relay.ts (a bare Node relay on 127.0.0.1 in front of `upstream`'s two ports); see startTargetsProcess. */
export function startRelayProcess(
  upstream: { sinkPort: number; echoPort: number },
  sides: { in: "tcp" | "tls"; out: "tcp" | "tls"; native?: boolean },
  pkiDir?: string,
): Promise<TargetsProcess> {
  const args = [
    RELAY_ENTRY,
    "--upstream-sink",
    String(upstream.sinkPort),
    "--upstream-echo",
    String(upstream.echoPort),
    "--in",
    sides.in,
    "--out",
    sides.out,
    ...(pkiDir ? ["--pki", pkiDir] : []),
  ];
  if (sides.native) args.push("--native");
  return startBenchProcess("relay", args, [], 15_000);
}

async function startBenchProcess(
  what: string,
  args: string[],
  prefix: string[],
  timeoutMs: number,
): Promise<TargetsProcess> {
  const [cmd, ...rest] = [...prefix, process.execPath, "--import", "tsx", ...args];
  const child = spawn(cmd!, rest, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.stdin!.end();
    const kill = setTimeout(() => child.kill("SIGKILL"), 2_000);
    child.kill("SIGTERM");
    await exited;
    clearTimeout(kill);
  };
  try {
    const ready = await readyLine(what, child, timeoutMs, () => stderr);
    return {
      host: ready.host ?? "127.0.0.1",
      sinkPort: ready.sinkPort,
      echoPort: ready.echoPort,
      pid: child.pid!,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

type ReadyLine = { ready: true; host?: string; sinkPort: number; echoPort: number };

function readyLine(what: string, child: ChildProcess, timeoutMs: number, stderr: () => string): Promise<ReadyLine> {
  return new Promise((resolve, reject) => {
    let out = "";
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new PathError(`${what} process ${why}${stderr() ? `: ${stderr().trim()}` : ""}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    child.once("error", (err) => fail(`did not start (${err.message})`));
    child.once("exit", (code, signal) => fail(`exited (${signal ?? code}) before it was ready`));
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      try {
        const o = JSON.parse(out.slice(0, nl)) as ReadyLine;
        if (o.ready) {
          clearTimeout(timer);
          child.removeAllListeners("exit");
          resolve(o);
        }
      } catch {
        fail(`printed ${JSON.stringify(out.slice(0, nl))} instead of its ready line`);
      }
    });
  });
}

// ---- dialers ------------------------------------------------------------------------------------------

/** Resolves once a TCP connection to host:port (from `localAddress` when given) is established. */
export function connectTcp(host: string, port: number, timeoutMs = 10_000, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host, port, allowHalfOpen: true, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(
      () => s.destroy(new PathError(`connect to ${host}:${port} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    s.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once("connect", () => {
      clearTimeout(timer);
      s.removeAllListeners("error");
      resolve(s);
    });
  });
}

export const tcpDialer =
  (host: string, port: number): Dial =>
  () =>
    connectTcp(host, port);

/** Dialers for the targets reached directly (the loopback baseline). */
export const directDialers = (t: { host: string; sinkPort: number; echoPort: number }): PathDialers => ({
  sink: tcpDialer(t.host, t.sinkPort),
  echo: tcpDialer(t.host, t.echoPort),
});

const HEADER_END = Buffer.from("\r\n\r\n");
const MAX_HEADER_BYTES = 16 * 1024;

/**
 * Opens a byte stream to `target` ("node:port") through an HTTP CONNECT proxy. Resolves after a 200, with
 * any bytes that followed the response headers put back in front of the stream; rejects with a
 * ProxyConnectError naming the status line otherwise. The header block may arrive in any number of chunks.
 */
export function connectVia(proxyHost: string, proxyPort: number, target: string, timeoutMs = 10_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: proxyHost, port: proxyPort, allowHalfOpen: true });
    const via = `${proxyHost}:${proxyPort}`;
    let head: Buffer = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(
      () => fail(new PathError(`CONNECT ${target} via ${via}: no answer after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const detach = () => {
      clearTimeout(timer);
      s.off("readable", onReadable);
      s.off("error", fail);
      s.off("end", onEnd);
    };
    function fail(err: Error) {
      if (settled) return;
      settled = true;
      detach();
      s.destroy();
      reject(err);
    }
    function onEnd() {
      fail(
        new PathError(
          `CONNECT ${target} via ${via}: the proxy closed the connection before answering${head.length ? ` (got ${JSON.stringify(head.toString("latin1"))})` : ""}`,
        ),
      );
    }
    // 'readable' + read() rather than 'data': removing a 'readable' listener leaves the stream neither
    // flowing nor paused, so the caller's own 'data' listener starts it as it would on a fresh socket.
    function onReadable() {
      let chunk: Buffer | null;
      while (!settled && (chunk = s.read() as Buffer | null) !== null) {
        head = head.length ? Buffer.concat([head, chunk]) : chunk;
        const end = head.indexOf(HEADER_END);
        if (end < 0) {
          if (head.length > MAX_HEADER_BYTES)
            fail(
              new PathError(
                `CONNECT ${target} via ${via}: no end of response headers within ${MAX_HEADER_BYTES} bytes`,
              ),
            );
          continue;
        }
        const statusLine = head.subarray(0, head.indexOf("\r\n")).toString("latin1");
        if (!/^HTTP\/1\.[01] 200(?: |$)/.test(statusLine)) {
          // The proxy's reason, when it sent one in the body, is part of the message.
          const reason = head
            .subarray(end + HEADER_END.length)
            .toString("utf8")
            .trim()
            .slice(0, 300);
          fail(
            new ProxyConnectError(
              target,
              statusLine,
              `CONNECT ${target} via ${via} refused: ${statusLine}${reason ? ` ${reason}` : ""}`,
            ),
          );
          return;
        }
        settled = true;
        detach();
        const rest = head.subarray(end + HEADER_END.length);
        if (rest.length > 0) s.unshift(rest);
        resolve(s);
      }
    }
    s.once("connect", () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    s.on("readable", onReadable);
    s.on("error", fail);
    s.on("end", onEnd);
  });
}

export const connectViaDialer =
  (proxyHost: string, proxyPort: number, target: string): Dial =>
  () =>
    connectVia(proxyHost, proxyPort, target);

// ---- measurements -------------------------------------------------------------------------------------

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

/** Collects everything the peer sends until it ends; fails on error, on a close without end, or when idle. */
function readToEnd(s: Socket, what: string): Promise<Buffer> {
  const p = new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let ended = false;
    s.setTimeout(IDLE_TIMEOUT_MS, () =>
      s.destroy(new PathError(`${what}: no progress for ${IDLE_TIMEOUT_MS / 1000} s`)),
    );
    s.on("data", (b: Buffer) => parts.push(b));
    s.once("end", () => {
      ended = true;
      resolve(Buffer.concat(parts));
    });
    s.once("error", (err) =>
      reject(err instanceof PathError ? err : new PathError(`${what}: ${err.message}`, { cause: err })),
    );
    s.once("close", () => ended || reject(new PathError(`${what}: connection closed before the reply`)));
  });
  p.catch(() => {}); // awaited later; keep an early failure from counting as unhandled meanwhile
  return p;
}

function drained(s: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      s.off("drain", done);
      s.off("close", closed);
      if (err) reject(err);
      else resolve();
    };
    const closed = () => done(new PathError("bulk: connection closed while writing"));
    s.once("drain", done);
    s.once("close", closed);
  });
}

/**
 * Pushes `bytes` through the path to the sink, half-closes, and waits for the sink's byte count.
 * Returns MB/s (1 MB = 1e6 bytes) from the first write to the count's arrival; dialing is not included.
 */
export async function measureBulk(dial: Dial, bytes = GIB): Promise<number> {
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new PathError(`bulk: bytes must be a positive integer, got ${bytes}`);
  const s = await dial();
  try {
    const reply = readToEnd(s, "bulk");
    // One buffer written over and over: never mutated, so a write still queued in the socket stays valid.
    const chunk = Buffer.alloc(Math.min(BULK_CHUNK_BYTES, bytes), 0x5a);
    const t0 = process.hrtime.bigint();
    let sent = 0;
    while (sent < bytes) {
      const n = Math.min(chunk.length, bytes - sent);
      sent += n;
      if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await Promise.race([drained(s), reply]);
    }
    s.end();
    const text = (await reply).toString("latin1").trim();
    const elapsed = seconds(t0);
    if (!/^\d+$/.test(text))
      throw new PathError(`bulk: the sink answered ${JSON.stringify(text.slice(0, 80))} instead of a byte count`);
    if (Number(text) !== bytes) throw new PathError(`bulk: sent ${bytes} bytes but the sink counted ${text}`);
    return bytes / 1e6 / elapsed;
  } finally {
    s.destroy();
  }
}

/**
 * Round trips of 64-byte requests on ONE kept-alive, no-delay connection to the echo server; each request
 * carries its sequence number, checked in the answer. The first `warmup` round trips are not counted.
 */
export async function measureRtt(dial: Dial, n = 20_000, warmup = 1_000): Promise<Rtt> {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(warmup) || warmup < 0)
    throw new PathError(`rtt: bad sample counts n=${n} warmup=${warmup}`);
  const s = await dial();
  s.setNoDelay(true);
  const samples = new Float64Array(n);
  try {
    await new Promise<void>((resolve, reject) => {
      // Reused for every request: the next one is written only after the echo of the previous one
      // arrived, so the previous write has long been flushed.
      const req = Buffer.alloc(ECHO_BYTES, 0x61);
      const resp = Buffer.alloc(ECHO_BYTES);
      let got = 0;
      let i = 0;
      let t0 = 0n;
      const fail = (err: Error) => {
        s.off("data", onData);
        reject(err instanceof PathError ? err : new PathError(`rtt: ${err.message}`, { cause: err }));
      };
      const send = () => {
        req.writeUInt32BE(i, 0);
        t0 = process.hrtime.bigint();
        s.write(req);
      };
      const onData = (b: Buffer) => {
        if (got + b.length > ECHO_BYTES)
          return fail(new PathError(`rtt: ${got + b.length} bytes arrived for one ${ECHO_BYTES}-byte request`));
        b.copy(resp, got);
        got += b.length;
        if (got < ECHO_BYTES) return;
        const us = Number(process.hrtime.bigint() - t0) / 1e3;
        if (resp.readUInt32BE(0) !== i)
          return fail(new PathError(`rtt: answer ${resp.readUInt32BE(0)} to request ${i}`));
        if (i >= warmup) samples[i - warmup] = us;
        got = 0;
        if (++i === warmup + n) {
          s.off("data", onData);
          resolve();
        } else send();
      };
      s.setTimeout(IDLE_TIMEOUT_MS, () => fail(new PathError(`rtt: no answer for ${IDLE_TIMEOUT_MS / 1000} s`)));
      s.on("data", onData);
      s.once("error", fail);
      s.once("end", () => fail(new PathError(`rtt: the path ended the connection after ${i} round trips`)));
      send();
    });
  } finally {
    s.destroy();
  }
  const sorted = Array.from(samples.sort());
  return { p50_us: percentile(sorted, 50), p99_us: percentile(sorted, 99) };
}

/** Dials, does one 64-byte echo round trip, closes. */
async function oneConnection(dial: Dial, req: Buffer): Promise<void> {
  const s = await dial();
  try {
    s.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      let got = 0;
      const timer = setTimeout(
        () => reject(new PathError(`conn: no answer within ${IDLE_TIMEOUT_MS / 1000} s`)),
        IDLE_TIMEOUT_MS,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        if (err) reject(err instanceof PathError ? err : new PathError(`conn: ${err.message}`, { cause: err }));
        else resolve();
      };
      s.on("data", (b: Buffer) => {
        got += b.length;
        if (got >= ECHO_BYTES) done();
      });
      s.once("error", done);
      s.once(
        "end",
        () =>
          got < ECHO_BYTES &&
          done(new PathError(`conn: the path ended the connection after ${got} of ${ECHO_BYTES} bytes`)),
      );
      s.write(req);
    });
  } finally {
    s.destroy();
  }
}

/**
 * Connections per second for `durationMs` with `concurrency` workers, each repeatedly dialing, doing one
 * echo round trip and closing. Any failed connection fails the measurement.
 */
export async function measureConnRate(dial: Dial, durationMs = 3_000, concurrency = 8): Promise<number> {
  if (!(durationMs > 0) || !Number.isInteger(concurrency) || concurrency < 1)
    throw new PathError(`conn: bad durationMs=${durationMs} concurrency=${concurrency}`);
  const req = Buffer.alloc(ECHO_BYTES, 0x63);
  const t0 = process.hrtime.bigint();
  const deadline = performance.now() + durationMs;
  let done = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && performance.now() < deadline) {
      try {
        await oneConnection(dial, req);
      } catch (err) {
        failed = true;
        throw err;
      }
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done / seconds(t0);
}

// ---- one path, end to end, and printing ---------------------------------------------------------------

export type MeasureOptions = Readonly<{
  bulkBytes: number;
  rttSamples: number;
  rttWarmup: number;
  connMs: number;
  concurrency: number;
}>;

export type Reporter = Readonly<{ figure(line: string): void; progress(line: string): void }>;

/** Figures on stdout, progress on stderr. */
export const consoleReporter: Reporter = {
  figure: (line) => process.stdout.write(line + "\n"),
  progress: (line) => process.stderr.write(line + "\n"),
};

/** A figure as printed: fixed digits, or "nan" for a path not measured. */
export const fmt = (v: number, digits = 0): string => (Number.isFinite(v) ? v.toFixed(digits) : "nan");

/** a / b, NaN when either is missing. */
export const ratio = (a: number, b: number): number =>
  Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN;

export const formatBytes = (n: number): string =>
  n % GIB === 0 ? `${n / GIB} GiB` : n % MIB === 0 ? `${n / MIB} MiB` : `${n} bytes`;

/** The result of a path that was not measured: every figure NaN. */
export const notMeasured = (label: string): PathResult => ({
  label,
  bulkMBps: NaN,
  rtt: { p50_us: NaN, p99_us: NaN },
  connPerS: NaN,
});

/** `label mbps=… rtt_p50_us=… rtt_p99_us=… conn_per_s=…` */
export const formatPathResult = (r: PathResult): string =>
  `${r.label} mbps=${fmt(r.bulkMBps, 1)} rtt_p50_us=${fmt(r.rtt.p50_us)} rtt_p99_us=${fmt(r.rtt.p99_us)} conn_per_s=${fmt(r.connPerS)}`;

/** How `a` compares with `b`: throughput and conn/s as a/b (higher is better), RTT as a/b (lower is better). */
export const formatRatios = (a: PathResult, b: PathResult): string =>
  `ratios ${a.label}/${b.label} mbps=${fmt(ratio(a.bulkMBps, b.bulkMBps), 2)} rtt_p50=${fmt(ratio(a.rtt.p50_us, b.rtt.p50_us), 2)} rtt_p99=${fmt(ratio(a.rtt.p99_us, b.rtt.p99_us), 2)} conn_per_s=${fmt(ratio(a.connPerS, b.connPerS), 2)}`;

/** Runs the three measurements on one path in order (bulk, RTT, connection rate), printing each figure. */
export async function measurePath(
  label: string,
  dial: PathDialers,
  o: MeasureOptions,
  out: Reporter = consoleReporter,
): Promise<PathResult> {
  out.progress(`${label}: pushing ${formatBytes(o.bulkBytes)} to the sink`);
  const bulkMBps = await measureBulk(dial.sink, o.bulkBytes);
  out.figure(`${label}: bulk ${fmt(bulkMBps, 1)} MB/s`);
  out.progress(`${label}: ${o.rttSamples} round trips of ${ECHO_BYTES} bytes (after ${o.rttWarmup} warm-up)`);
  const rtt = await measureRtt(dial.echo, o.rttSamples, o.rttWarmup);
  out.figure(`${label}: rtt p50 ${fmt(rtt.p50_us)} us, p99 ${fmt(rtt.p99_us)} us`);
  out.progress(`${label}: connections for ${o.connMs / 1000} s, ${o.concurrency} at a time`);
  const connPerS = await measureConnRate(dial.echo, o.connMs, o.concurrency);
  out.figure(`${label}: ${fmt(connPerS)} connections/s`);
  return { label, bulkMBps, rtt, connPerS };
}
