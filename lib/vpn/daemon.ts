// The VPN daemons the drivers run (charon, wireguard-go) as child processes: how their exit is tracked and how
// they are stopped, the same for every driver.
import type { ChildProcess } from "node:child_process";
import { getPriority } from "node:os";
import { TunnelError, describeError } from "../../shared/errors";
import { pollUntil } from "../../shared/poll";
import { canConnect } from "./files";
import { execInNs } from "../kernel";

/**
 * The nice value the daemons run at: the machine's default, below the control path that starts them (the
 * fleet runs gateway actors at nice -5). A daemon's bursts — IKE's Diffie-Hellman for every peer at once when
 * a gateway takes over, userspace ESP under load — then cannot delay the heartbeats that keep the gateway's
 * lease, as they did at the same priority (a cold start lost one active to it), and it competes with the
 * node's workloads as any process does.
 */
export const DAEMON_NICE = 0;

/** Exec-chain words (`nice -n N`) that bring a child from this process's nice down to DAEMON_NICE, if above it. */
export function daemonNiceArgv(): string[] {
  const delta = DAEMON_NICE - getPriority();
  return delta > 0 ? ["nice", "-n", String(delta)] : [];
}

/**
 * The command line of a VPN daemon in network namespace `netns` (the current one when undefined) with a
 * private tmpfs on /run (its pid file and control socket live there, so two daemons never meet), a
 * parent-death signal, and DAEMON_NICE. An exec chain with no fork (ip netns exec -> setpriv -> nice ->
 * unshare -> sh -> the daemon), so the child's PID is the daemon's own.
 */
export function daemonArgv(o: {
  netns: string | undefined;
  deathSignal: "TERM" | "KILL";
  /** tmpfs size and name, e.g. "16m" and "raven-charon". */
  run: { size: string; name: string };
  command: string;
  args?: readonly string[];
}): string[] {
  const args = o.args ?? [];
  const exec = `exec "$0"${args.map((_, i) => ` "$${i + 1}"`).join("")}`;
  return execInNs(o.netns, [
    "setpriv",
    "--pdeathsig",
    o.deathSignal,
    ...daemonNiceArgv(),
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount -t tmpfs -o mode=0755,size=${o.run.size} ${o.run.name} /run && ${exec}`,
    o.command,
    ...args,
  ]);
}

export type Daemon = {
  readonly child: ChildProcess;
  /** Why it is gone ("charon exited (SIGKILL)", "… could not start: …"), or null while it runs. */
  exitInfo: string | null;
  /** Resolves when the process has exited or failed to start. */
  readonly exited: Promise<void>;
};

/** Tracks `child` (named `name` in exitInfo) from now on. */
export function watchDaemon(child: ChildProcess, name: string): Daemon {
  let daemon!: Daemon;
  const exited = new Promise<void>((res) => {
    child.once("exit", (code, signal) => {
      daemon.exitInfo = `${name} exited (${signal ?? `code ${code}`})`;
      res();
    });
    child.once("error", (err) => {
      daemon.exitInfo = `${name} could not start: ${describeError(err)}`;
      res();
    });
  });
  daemon = { child, exitInfo: null, exited };
  return daemon;
}

/**
 * Resolves once the daemon's control socket (`socket`, named `what`) accepts connections; rejects with a
 * TunnelError saying why when the daemon exits first or `timeoutMs` runs out.
 */
export async function waitForSocket(d: Daemon, what: string, socket: string, timeoutMs: number): Promise<void> {
  await pollUntil(what, timeoutMs, () => canConnect(socket), {
    everyMs: 20,
    giveUp: () => d.exitInfo,
    error: (why) => new TunnelError(why),
  });
}

/** SIGTERM, then SIGKILL if it is still there after `graceMs`; resolves once it is gone. */
export async function stopDaemon(d: Daemon | null, graceMs = 3_000): Promise<void> {
  if (!d || d.exitInfo !== null) return;
  d.child.kill("SIGTERM");
  const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
  if ((await Promise.race([d.exited, timer])) === "timeout") {
    d.child.kill("SIGKILL");
    await d.exited;
  }
}
