// Child processes of a fleet: spawned with their output appended to a log file, supervised (restarted after
// a delay when they die, backing off like a kubelet's CrashLoopBackOff), stopped by PID. A pid file lets the
// next run reap what a crashed launcher left behind — only processes whose command line names this run
// directory.
import { pollUntil } from "../../shared/poll";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, openSync, readFileSync, writeFileSync, closeSync } from "node:fs";
import { createConnection } from "node:net";
import { ConfigError } from "../../shared/errors";

export type ProcKind = "hub" | "leaf" | "coordinator" | "node" | "gateway";

export type ProcSpec = Readonly<{
  name: string;
  kind: ProcKind;
  command: string;
  args: string[];
  logFile: string;
  env?: Record<string, string>;
  /**
   * Restart after this delay when it exits unexpectedly; undefined = never. Consecutive restarts of a process
   * that did not stay up for STABLE_MS back off (see restartDelay).
   */
  restartDelayMs?: number;
  /** Run at this nice value (root only for negative values; ignored otherwise): every thread inherits it. */
  nice?: number;
}>;

/** A process up this long since its last start is stable: its next crash restarts it after the base delay. */
export const STABLE_MS = 10_000;
/** No restart waits longer than this. */
export const MAX_RESTART_DELAY_MS = 30_000;

/**
 * The delay before restarting a process that exited unexpectedly for the `crashes`-th time in a row (1 for
 * the first): the base delay doubled per earlier crash, capped at MAX_RESTART_DELAY_MS, times a jitter of
 * ±20 % (`random` in [0, 1)) so that processes that died together do not all come back in the same instant.
 */
export function restartDelay(baseMs: number, crashes: number, random: number): number {
  const backoff = Math.min(MAX_RESTART_DELAY_MS, baseMs * 2 ** Math.max(0, Math.min(crashes - 1, 16)));
  return Math.round(backoff * (0.8 + 0.4 * random));
}

/** The command line that runs argv at a nice value (unchanged when none is asked for or allowed). */
export function niced(
  command: string,
  args: string[],
  nice: number | undefined,
  isRoot: boolean,
): { command: string; args: string[] } {
  if (nice === undefined || nice === 0 || (nice < 0 && !isRoot)) return { command, args };
  return { command: "nice", args: ["-n", String(nice), command, ...args] };
}

export type ProcEvent =
  | { type: "exit"; name: string; code: number | null; signal: string | null }
  | { type: "start"; name: string; pid: number };

export class ManagedProc {
  child: ChildProcess | null = null;
  restarts = 0;
  /** Unexpected exits since the process last stayed up for STABLE_MS. */
  private crashes = 0;
  private startedAt = 0;
  /** Why the last spawn failed (e.g. the command is not on PATH), if it did. */
  spawnError: string | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly spec: ProcSpec,
    private readonly onEvent: (e: ProcEvent) => void,
  ) {}

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  start(): void {
    if (this.running) return;
    this.stopping = false;
    const fd = openSync(this.spec.logFile, "a");
    const { command, args } = niced(this.spec.command, this.spec.args, this.spec.nice, process.getuid?.() === 0);
    this.startedAt = Date.now();
    const child = spawn(command, args, {
      stdio: ["pipe", fd, fd],
      env: { ...process.env, ...this.spec.env, RAVEN_EXIT_WITH_PARENT: "1" },
    });
    closeSync(fd);
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.onEvent({ type: "exit", name: this.spec.name, code, signal });
        resolve();
        if (!this.stopping && this.spec.restartDelayMs !== undefined) {
          this.crashes = Date.now() - this.startedAt >= STABLE_MS ? 1 : this.crashes + 1;
          this.restartTimer = setTimeout(
            () => {
              this.restartTimer = null;
              if (!this.stopping) {
                this.restarts++;
                this.start();
              }
            },
            restartDelay(this.spec.restartDelayMs, this.crashes, Math.random()),
          );
        }
      });
    });
    child.once("error", (err) => {
      // ENOENT and the like: no "exit" follows, so report it here.
      this.spawnError = `${this.spec.command}: ${err.message}`;
      this.onEvent({ type: "exit", name: this.spec.name, code: null, signal: this.spawnError });
    });
    if (child.pid) this.onEvent({ type: "start", name: this.spec.name, pid: child.pid });
  }

  /** Sends a signal without stopping supervision: a killed process is restarted (see restartDelay). */
  kill(signal: NodeJS.Signals = "SIGKILL"): number | undefined {
    const pid = this.pid;
    if (pid !== undefined) this.child!.kill(signal);
    return pid;
  }

  waitExit(): Promise<void> {
    return this.exited;
  }

  /** Stops for good: SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (!this.running) return;
    this.child!.kill("SIGTERM");
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export async function waitForPort(port: number, timeoutMs: number, host = "127.0.0.1"): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const sock = createConnection({ host, port }, () => {
        sock.destroy();
        resolve(true);
      });
      sock.once("error", () => {
        sock.destroy();
        resolve(false);
      });
    });
  await pollUntil(`${host}:${port}`, timeoutMs, accepts, {
    everyMs: 25,
    error: () => new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`),
  });
}

/** Ports the OS just handed out as free; they are released before use, so collisions are unlikely, not impossible. */
/** Ports this process has handed out: a later call never returns them again, even though they were free
 * (released) in between — a fleet asks several times (NATS, proxy listeners, metrics) before anything binds. */
const handedOut = new Set<number>();

export async function freePorts(count: number): Promise<number[]> {
  const { createServer } = await import("node:net");
  const bind = () =>
    new Promise<import("node:net").Server>((resolve) => {
      const s = createServer();
      s.listen(0, "127.0.0.1", () => resolve(s));
    });
  const portOf = (s: import("node:net").Server) => (s.address() as import("node:net").AddressInfo).port;
  // Every server stays open until the end, so the kernel cannot offer a port twice within this call.
  const servers = await Promise.all(Array.from({ length: count }, bind));
  const ports = servers.map(portOf).filter((p) => !handedOut.has(p));
  while (ports.length < count) {
    const s = await bind();
    servers.push(s);
    if (!handedOut.has(portOf(s))) ports.push(portOf(s));
  }
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  for (const p of ports) handedOut.add(p);
  return ports;
}

/** Throws a clear error naming the port when something already listens there. */
export async function assertPortsFree(ports: number[]): Promise<void> {
  const { createServer } = await import("node:net");
  for (const port of ports) {
    await new Promise<void>((resolve, reject) => {
      const s = createServer();
      s.once("error", () =>
        reject(
          new ConfigError(
            "--port",
            `port ${port} on 127.0.0.1 is in use (another fleet or nats-server?); stop it, or pass --port 0 for free ports`,
          ),
        ),
      );
      s.listen(port, "127.0.0.1", () => s.close(() => resolve()));
    });
  }
}

type PidEntry = { pid: number; name: string };

export function writePidFile(file: string, procs: Iterable<ManagedProc>): void {
  const entries: PidEntry[] = [];
  for (const p of procs) if (p.pid) entries.push({ pid: p.pid, name: p.spec.name });
  writeFileSync(file, JSON.stringify(entries));
}

/** Kills what a previous launcher of this run directory left running (only processes whose command line names it). */
export function reapStale(file: string, marker: string): number {
  if (!existsSync(file)) return 0;
  let reaped = 0;
  try {
    const entries = JSON.parse(readFileSync(file, "utf8")) as PidEntry[];
    for (const e of entries) {
      try {
        const cmdline = readFileSync(`/proc/${e.pid}/cmdline`, "utf8");
        if (cmdline.includes(marker)) {
          process.kill(e.pid, "SIGKILL");
          reaped++;
        }
      } catch {
        // gone already
      }
    }
  } catch {
    // unreadable pid file: nothing to reap
  }
  return reaped;
}
