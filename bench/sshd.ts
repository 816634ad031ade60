// The OpenSSH reference path for bench:proxy: a private sshd on 127.0.0.1 (own temp dir, host key, client
// key, config; no PAM, keys only) and `ssh -N -R` reverse tunnels through it, the way an edge node would
// expose a port to the cloud with stock tools. Data path: client -> sshd's forwarded port -> SSH channel ->
// ssh client -> target.
// Lifetime: every process is started through `setpriv --pdeathsig SIGKILL`, so the kernel kills it when this
// process dies for any reason, and a process 'exit' hook kills what is left on an orderly exit. stop()
// kills by PID (SIGTERM, then SIGKILL) and is idempotent; Sshd.stop() stops its tunnels first. A temp dir
// that a killed run could not remove is removed by the next startSshd once its sshd is gone.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createConnection } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { ErrorCode, RavenError } from "../shared/errors";
import { freePorts } from "../services/fleet/procs";

export const SSHD_PATH = "/usr/sbin/sshd";
const SETPRIV_PATH = "/usr/bin/setpriv";
const START_TIMEOUT_MS = 10_000;

/** A program the ssh path needs is not installed. */
export class SshMissingError extends RavenError {
  constructor(
    readonly program: string,
    readonly pkg: string,
  ) {
    super(ErrorCode.Config, `${program} not found: install ${pkg} (bash scripts/setup.sh installs it)`);
    this.name = "SshMissingError";
  }
}

/** sshd or ssh failed to start or did not accept connections; the message carries the end of its log. */
export class SshStartError extends RavenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Internal, message, options);
    this.name = "SshStartError";
  }
}

export type Tunnel = Readonly<{ port: number; pid: number; stop(): Promise<void> }>;

export type Sshd = Readonly<{
  port: number;
  pid: number;
  dir: string;
  user: string;
  clientKey: string;
  stop(): Promise<void>;
}>;

// ---- child processes tied to this one ----------------------------------------------------------------

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function spawnTied(command: string, args: string[], logFile: string): ChildProcess {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
  }
  const fd = openSync(logFile, "a");
  const [cmd, argv] = existsSync(SETPRIV_PATH)
    ? [SETPRIV_PATH, ["--pdeathsig", "SIGKILL", command, ...args]]
    : [command, args];
  const child = spawn(cmd, argv, { stdio: ["ignore", fd, fd] });
  closeSync(fd);
  live.add(child);
  child.once("exit", () => live.delete(child));
  child.once("error", () => live.delete(child));
  return child;
}

const isRunning = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

async function stopChild(c: ChildProcess, graceMs = 2_000): Promise<void> {
  if (!isRunning(c) || c.pid === undefined) return;
  const exited = new Promise((r) => c.once("exit", r));
  c.kill("SIGTERM");
  const timer = setTimeout(() => c.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

const logTail = (file: string) => {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-8).join("\n");
  } catch {
    return "";
  }
};

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** Waits until 127.0.0.1:port accepts; fails early, with the log, when the process dies first. */
async function waitAccepting(port: number, child: ChildProcess, what: string, logFile: string): Promise<void> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  let spawnError: Error | null = null;
  child.once("error", (err) => (spawnError = err));
  for (;;) {
    if (spawnError)
      throw new SshStartError(`${what} did not start: ${(spawnError as Error).message}`, { cause: spawnError });
    if (!isRunning(child))
      throw new SshStartError(
        `${what} exited (${child.signalCode ?? child.exitCode}) before port ${port} accepted:\n${logTail(logFile)}`,
      );
    if (await accepts(port)) return;
    if (performance.now() > deadline)
      throw new SshStartError(
        `${what}: port ${port} does not accept after ${START_TIMEOUT_MS} ms:\n${logTail(logFile)}`,
      );
    await new Promise((r) => setTimeout(r, 25));
  }
}

const onPath = (program: string) => (process.env.PATH ?? "").split(":").some((d) => d && existsSync(join(d, program)));

function run(command: string, args: string[]): void {
  const r = spawnSync(command, args, { encoding: "utf8" });
  if (r.error) throw new SshStartError(`${command} did not start: ${r.error.message}`, { cause: r.error });
  if (r.status !== 0)
    throw new SshStartError(
      `${command} ${args.join(" ")} failed (${r.signal ?? r.status}): ${(r.stderr || r.stdout).trim()}`,
    );
}

// ---- sshd ---------------------------------------------------------------------------------------------

const DIR_PREFIX = "raven-sshd-";

/**
 * Removes the temp dirs of earlier runs that died without cleaning up (their processes died with them):
 * only dirs whose sshd.pid names a process that is gone or no longer an sshd of that dir.
 */
function sweepStaleDirs(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    let pid: string;
    let cmdline = "";
    try {
      pid = readFileSync(join(dir, "sshd.pid"), "utf8").trim();
    } catch {
      continue; // starting right now, or not ours to judge
    }
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      // gone
    }
    if (!cmdline.includes(dir)) rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts a private sshd on 127.0.0.1 at a free port; resolves once it accepts connections. */
export async function startSshd(): Promise<Sshd> {
  if (!existsSync(SSHD_PATH)) throw new SshMissingError(SSHD_PATH, "openssh-server");
  for (const program of ["ssh", "ssh-keygen"])
    if (!onPath(program)) throw new SshMissingError(program, "openssh-client");
  sweepStaleDirs();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  const tunnels = new Set<Tunnel>();
  let child: ChildProcess | null = null;
  let self: Sshd | null = null;
  const stop = async () => {
    if (self) sshdTunnels.delete(self);
    await Promise.all([...tunnels].map((t) => t.stop()));
    if (child) await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const hostKey = join(dir, "host_ed25519");
    const clientKey = join(dir, "client_ed25519");
    for (const key of [hostKey, clientKey])
      run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "raven-bench", "-f", key]);
    const authorizedKeys = join(dir, "authorized_keys");
    writeFileSync(authorizedKeys, readFileSync(`${clientKey}.pub`));
    chmodSync(authorizedKeys, 0o600);
    // sshd running as root insists on its privilege-separation directory.
    try {
      mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    } catch (err) {
      if (process.getuid?.() === 0) throw err;
    }
    const [port] = await freePorts(1);
    const config = join(dir, "sshd_config");
    writeFileSync(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        "AllowTcpForwarding yes",
        "GatewayPorts no",
        "X11Forwarding no",
        "PrintMotd no",
        "UseDNS no",
        "LogLevel INFO",
        "",
      ].join("\n"),
    );
    run(SSHD_PATH, ["-t", "-f", config]);
    const log = join(dir, "sshd.log");
    child = spawnTied(SSHD_PATH, ["-D", "-e", "-f", config], log);
    await waitAccepting(port!, child, "sshd", log);
    self = { port: port!, pid: child.pid!, dir, user: userInfo().username, clientKey, stop };
    sshdTunnels.set(self, tunnels);
    return self;
  } catch (err) {
    await stop();
    throw err;
  }
}

const sshdTunnels = new WeakMap<Sshd, Set<Tunnel>>();

// ---- ssh -R -------------------------------------------------------------------------------------------

export type TunnelOptions = Readonly<{ /** `ssh -c`; absent = OpenSSH's default choice. */ cipher?: string }>;

/**
 * The cipher a tunnel will use: the first of the client's list (client and server are the same OpenSSH, so
 * the server accepts it). Throws SshStartError for a cipher ssh does not know.
 */
export function tunnelCipher(opts: TunnelOptions = {}): string {
  if (!onPath("ssh")) throw new SshMissingError("ssh", "openssh-client");
  const r = spawnSync("ssh", ["-F", "/dev/null", ...(opts.cipher ? ["-c", opts.cipher] : []), "-G", "127.0.0.1"], {
    encoding: "utf8",
  });
  const line = /^ciphers (\S+)$/m.exec(r.stdout ?? "")?.[1];
  if (r.status !== 0 || !line)
    throw new SshStartError(
      `ssh -c ${opts.cipher ?? "(default)"}: ${(r.stderr || r.error?.message || "no cipher list").trim()}`,
    );
  return line.split(",")[0]!;
}

/**
 * `ssh -N -R 127.0.0.1:<free>:127.0.0.1:<targetPort>` into `sshd` with its client key: connections to the
 * returned port (on the sshd side) come out of the ssh client at 127.0.0.1:targetPort. Resolves once the
 * forwarded port accepts.
 */
export async function reverseTunnel(sshd: Sshd, targetPort: number, opts: TunnelOptions = {}): Promise<Tunnel> {
  const tunnels = sshdTunnels.get(sshd);
  if (!tunnels) throw new SshStartError("reverseTunnel: this sshd was not started by startSshd or is stopped");
  const [port] = await freePorts(1);
  const log = join(sshd.dir, `ssh-R-${port}.log`);
  const args = [
    "-F",
    "/dev/null", // no user or system client config: the same ssh everywhere
    "-N",
    "-p",
    String(sshd.port),
    "-i",
    sshd.clientKey,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "IdentityAgent=none",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ExitOnForwardFailure=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
    ...(opts.cipher ? ["-c", opts.cipher] : []),
    "-R",
    `127.0.0.1:${port}:127.0.0.1:${targetPort}`,
    `${sshd.user}@127.0.0.1`,
  ];
  const child = spawnTied("ssh", args, log);
  const tunnel: Tunnel = {
    port: port!,
    pid: child.pid ?? -1,
    stop: async () => {
      tunnels.delete(tunnel);
      await stopChild(child);
    },
  };
  tunnels.add(tunnel);
  try {
    await waitAccepting(port!, child, `ssh -R ${port}:${targetPort}`, log);
  } catch (err) {
    await tunnel.stop();
    throw err;
  }
  return tunnel;
}
