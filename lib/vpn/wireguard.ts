// The WireGuard VpnDriver: one userspace wireguard-go per gateway (this kernel has no WireGuard module),
// configured over wireguard-go's UAPI socket directly (no `wg` process per read or change). Keys come from the shared PSK and the node names
// (wireguard-conf.ts), so nothing but the PSK is distributed; the peer's public key is derived from
// VpnPeer.remoteNode. Remote pod CIDRs are routed into the device (`tunnelDev`) by the route driver.
//
// Guarantees:
// - Several drivers coexist on one machine, with the same device name in different namespaces: wireguard-go
//   runs in the caller's network namespace (`ip netns exec`) and in its own mount namespace with a private
//   tmpfs on /run. Its UAPI socket path is compiled in as /var/run/wireguard/DEV.sock (/var/run is /run on
//   Debian), and that directory is shared by all network namespaces: without the private /run, two drivers
//   using raven-wg0 in two namespaces would take each other's socket. The driver reaches the right socket
//   through /proc/<wireguard-go pid>/root, which crosses into wireguard-go's mount namespace (`wg` by hand:
//   `nsenter -t <pid> -m -n wg`). stateDir must not be under /run (the private tmpfs hides it).
// - wireguard-go runs in the foreground with a parent-death signal (setpriv --pdeathsig KILL): if the owner
//   dies without cleanup(), wireguard-go goes with it and the kernel removes its TUN device.
// - A wireguard-go that died is reported (every peer down) and started again by the next apply, with the
//   peers re-added (new saIds). Its TUN device is new too, and the kernel dropped the routes into the old one:
//   the route driver must be applied after this one (a reconciler applies both on every resync).
// - apply is idempotent and level-triggered: it reads the device (UAPI `get`) and the link (rtnetlink), and
//   changes only what differs (see diffWireGuardPeers); `changes` counts every request that changed
//   something, so a second apply of the same state can be seen to change nothing. A peer whose `set` fails is
//   reported in its status (lastError), not thrown. The PSK is read on every apply (a rotation re-keys everything).
// - Exactly one side of a pair initiates (VpnPeer.initiate): only it keeps a persistent keepalive; the other
//   initiates once, RESPONDER_NUDGE_MS after adding the peer, if no handshake came (wireguard-conf.ts says
//   why: two gateways configured at once otherwise collide, every 5 s).
// - Every gateway listens on `listenPort`, and a peer's endpoint is its remoteAddr on that same port.
//   localAddr is not needed: wireguard-go listens on every address, and the remote side's allowed IPs
//   (which also filter what it accepts from us) are its own remoteSubnets. localSubnets give the gateway's
//   anchors on `lo` (anchors.ts), which the latency probe pings between; cleanup removes them.
// - cleanup() stops wireguard-go by its PID (TERM, then KILL after a grace period), deletes the device if it
//   is still there, and removes stateDir; idempotent.
//
// Over 400 lines, one concept: the driver against one wireguard-go. Its pure half (keys, the peer plan, UAPI
// messages, the diff) is wireguard-conf.ts.
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { systemClock, type Clock, type TimerHandle } from "../../shared/clock";
import { MissingDependencyError, TunnelError, describeError } from "../../shared/errors";
import { isObjectName } from "../../shared/protocol/subjects";
import { WIREGUARD_DEVICE } from "./drivers";
import { ensureAnchors } from "./anchors";
import { linkNamed, NetlinkNet, type KernelNet } from "../kernel";
import { daemonArgv, stopDaemon, waitForSocket, watchDaemon, type Daemon } from "./daemon";
import { MIN_IPV4_MTU, WIREGUARD_OVERHEAD_BYTES } from "./overhead";
import { readPsk } from "./psk";
import {
  HANDSHAKE_FRESH_SEC,
  RESPONDER_NUDGE_MS,
  diffWireGuardPeers,
  parseUapiGet,
  planWireGuardPeers,
  uapiDevice,
  uapiErrno,
  uapiNudge,
  uapiPeer,
  uapiRemovePeer,
  uapiSet,
  wireguardKeyPair,
  wireguardPresharedKey,
  type WgDeviceDump,
  type WgWantedPeer,
} from "./wireguard-conf";
import {
  PeerState,
  validateVpnDesired,
  type VpnDesired,
  type VpnDriver,
  type VpnPeerStatus,
  type VpnStatus,
} from "./vpn-driver";

export const WIREGUARD_PACKAGES = ["wireguard-go", "wireguard-tools"] as const;
export const DEFAULT_WIREGUARD_GO = "/usr/bin/wireguard-go";
export const DEFAULT_WIREGUARD_PORT = 51820;
const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;

export type WireGuardOptions = Readonly<{
  /** Absolute directory owned by this driver (created 0700, removed by cleanup): key files, log. Not under /run. */
  stateDir: string;
  /** The tunnel's shared secret file, the same as strongSwan's (see readPsk / ensurePskFile). */
  pskFile: string;
  /** This gateway's node name: its key identity (peers derive our public key from it). */
  node: string;
  /** Network namespace wireguard-go runs in; the current one when left out. */
  netns?: string;
  /** The driver's name in its status. Default "wireguard". */
  name?: string;
  /** The WireGuard device (a TUN). Default WIREGUARD_DEVICE ("raven-wg0", what drivers.ts tells the routes). */
  device?: string;
  /** UDP port this gateway listens on, and the port of every peer's endpoint. Default 51820. */
  listenPort?: number;
  /** MTU of the underlay; the device gets underlayMtu - WIREGUARD_OVERHEAD_BYTES. Default 1500. */
  underlayMtu?: number;
  wireguardGoPath?: string;
  /** The namespace's kernel state (default: rtnetlink in `netns`); tests pass a FakeNet. */
  net?: KernelNet;
  /** How long to wait for wireguard-go's UAPI socket after start. Default 10 s. */
  startTimeoutMs?: number;
  /** wallMs() dates handshakes (wg reports them in Unix seconds); now() times the start. Default systemClock. */
  clock?: Clock;
}>;

/** Throws MissingDependencyError naming the Debian packages when wireguard-go is missing. */
export function checkWireGuardInstalled(paths: Readonly<{ wireguardGo?: string }> = {}): void {
  const wgGo = paths.wireguardGo ?? DEFAULT_WIREGUARD_GO;
  if (!existsSync(wgGo))
    throw new MissingDependencyError(wgGo, WIREGUARD_PACKAGES, "the userspace WireGuard daemon is not installed");
}

/** The daemon and its pid as spawned (kept after exit, for tests of the parent-death signal). */
type WgDaemon = Daemon & { readonly pid: number };

export class WireGuardDriver implements VpnDriver {
  readonly name: string;
  readonly overheadBytes = WIREGUARD_OVERHEAD_BYTES;
  readonly tunnelDev: string;
  /** Requests apply made that changed something (key/port, link, the peers): churn, for tests and metrics. */
  changes = 0;
  /** Times wireguard-go was started. */
  starts = 0;
  /** Times this side, responding, initiated itself because the initiator's handshake did not come (wireguard-conf.ts). */
  nudged = 0;
  private readonly o: Required<Omit<WireGuardOptions, "netns" | "name" | "device" | "net" | "clock">> & {
    netns: string | undefined;
  };
  private readonly net: KernelNet;
  private readonly clock: Clock;
  private daemon: WgDaemon | null = null;
  /** Whether a device of ours may exist (so cleanup touches the namespace only when it must). */
  private started = false;
  /** Whether `lo:raven` anchors may exist (so cleanup touches the namespace only when it must). */
  private anchored = false;
  private wanted: readonly WgWantedPeer[] = [];
  private readonly peerErrors = new Map<string, string>();
  /** Per peer public key: which of our additions of it to the device is live (part of its saId). */
  private readonly generations = new Map<string, number>();
  private nextGeneration = 1;
  /** Peers this side responds to, added and not handshaken yet: when each gets its one nudge (wireguard-conf.ts). */
  private readonly nudges = new Map<string, TimerHandle>();

  constructor(options: WireGuardOptions) {
    const bad = (key: string, why: string) => new TunnelError(`wireguard: ${key} ${why}`);
    if (!isAbsolute(options.stateDir)) throw bad("stateDir", `${JSON.stringify(options.stateDir)} must be absolute`);
    const stateDir = resolve(options.stateDir);
    if (stateDir === "/run" || stateDir.startsWith("/run/") || stateDir.startsWith("/var/run/")) {
      throw bad(
        "stateDir",
        `${stateDir} is under /run, which wireguard-go replaces with a private tmpfs; pick another directory`,
      );
    }
    if (!isObjectName(options.node))
      throw bad("node", `${JSON.stringify(options.node)} must be a node name (a DNS subdomain name)`);
    const device = options.device ?? WIREGUARD_DEVICE;
    if (!IFNAME.test(device))
      throw bad("device", `${JSON.stringify(device)} must be an interface name (1-15 of [a-zA-Z0-9_.-])`);
    const listenPort = options.listenPort ?? DEFAULT_WIREGUARD_PORT;
    if (!Number.isInteger(listenPort) || listenPort < 1 || listenPort > 65535)
      throw bad("listenPort", `${JSON.stringify(listenPort)} must be an integer 1..65535`);
    const underlayMtu = options.underlayMtu ?? 1500;
    if (
      !Number.isInteger(underlayMtu) ||
      underlayMtu - WIREGUARD_OVERHEAD_BYTES < MIN_IPV4_MTU ||
      underlayMtu > 65535
    ) {
      throw bad(
        "underlayMtu",
        `${JSON.stringify(underlayMtu)} must be an integer ${MIN_IPV4_MTU + WIREGUARD_OVERHEAD_BYTES}..65535`,
      );
    }
    this.name = options.name ?? "wireguard";
    this.tunnelDev = device;
    this.o = {
      stateDir,
      pskFile: options.pskFile,
      node: options.node,
      netns: options.netns,
      listenPort,
      underlayMtu,
      startTimeoutMs: options.startTimeoutMs ?? 10_000,
      wireguardGoPath: options.wireguardGoPath ?? DEFAULT_WIREGUARD_GO,
    };
    this.net = options.net ?? new NetlinkNet(options.netns);
    this.clock = options.clock ?? systemClock;
  }

  /** MTU of the WireGuard device. */
  get deviceMtu(): number {
    return this.o.underlayMtu - WIREGUARD_OVERHEAD_BYTES;
  }

  /** The PID of the running wireguard-go, if any. */
  get pid(): number | undefined {
    return this.daemon && this.daemon.exitInfo === null ? this.daemon.pid : undefined;
  }

  private get files() {
    const d = this.o.stateDir;
    return {
      privateKey: join(d, "private.key"),
      presharedKey: join(d, "preshared.key"),
      log: join(d, "wireguard-go.log"),
    };
  }

  /** wireguard-go's UAPI socket, as seen through its own mount namespace. */
  private socketOf(pid: number): string {
    return `/proc/${pid}/root/run/wireguard/${this.tunnelDev}.sock`;
  }

  async apply(desired: VpnDesired): Promise<VpnStatus> {
    validateVpnDesired(desired);
    const psk = readPsk(this.o.pskFile);
    const wanted = planWireGuardPeers(desired.peers, psk, this.o.node, this.o.listenPort);
    checkWireGuardInstalled({ wireguardGo: this.o.wireguardGoPath });
    const keys = wireguardKeyPair(psk, this.o.node);
    const presharedKey = wireguardPresharedKey(psk);
    const pid = await this.ensureDaemon();
    for (const gone of this.wanted) if (!wanted.some((w) => w.name === gone.name)) this.peerErrors.delete(gone.name);
    this.wanted = wanted;

    let dump = await this.dump(pid);
    if (dump.privateKey !== keys.privateKey || dump.listenPort !== this.o.listenPort) {
      await this.set(pid, uapiDevice(keys.privateKey, this.o.listenPort));
      this.changes++;
      dump = await this.dump(pid); // a new private key drops the sessions; read what is left
    }
    this.ensureLink();
    this.anchored = true;
    ensureAnchors(
      this.net,
      desired.peers.flatMap((p) => p.localSubnets),
    );
    const ops = diffWireGuardPeers(dump.peers, wanted, presharedKey);
    // One request per peer, so that a peer wireguard-go refuses is that peer's error and the others go on.
    for (const op of ops) {
      if (op.type === "remove") {
        await this.set(pid, uapiRemovePeer(op.publicKey));
        this.changes++;
        this.generations.delete(op.publicKey);
        this.cancelNudge(op.publicKey);
        continue;
      }
      const p = op.peer;
      try {
        await this.set(pid, uapiPeer(p, presharedKey, op.setEndpoint));
        this.changes++;
        this.peerErrors.delete(p.name);
        if (op.added) this.generations.set(p.publicKey, this.nextGeneration++);
        if (op.added && p.keepaliveSec === 0) this.armNudge(p.publicKey);
      } catch (err) {
        this.peerErrors.set(p.name, `set failed: ${describeError(err)}`);
      }
    }
    return this.status();
  }

  async status(): Promise<VpnStatus> {
    const d = this.daemon;
    if (!d || d.exitInfo !== null) return this.allDown(d?.exitInfo ?? "wireguard-go is not running");
    let dump: WgDeviceDump;
    try {
      dump = await this.dump(d.pid);
    } catch (err) {
      return this.allDown(`device ${this.tunnelDev} unreadable: ${describeError(err)}`);
    }
    const nowSec = this.clock.wallMs() / 1000;
    const live = new Map(dump.peers.map((p) => [p.publicKey, p]));
    const peers = this.wanted.map((w): VpnPeerStatus => {
      const l = live.get(w.publicKey);
      const err = this.peerErrors.get(w.name) ?? null;
      if (!l)
        return {
          name: w.name,
          state: PeerState.Down,
          saId: null,
          bytesIn: null,
          bytesOut: null,
          lastError: err ?? "peer not configured on the device",
        };
      const ageSec = nowSec - l.latestHandshakeSec;
      const up = l.latestHandshakeSec > 0 && ageSec <= HANDSHAKE_FRESH_SEC;
      const why =
        l.latestHandshakeSec === 0 ? "no handshake with the peer yet" : `last handshake ${Math.round(ageSec)} s ago`;
      return {
        name: w.name,
        state: up ? PeerState.Up : PeerState.Connecting,
        // The peer's key, where it speaks from, and which addition of the peer to our device this is: stable
        // across WireGuard's 2-minute rekeys; new when another gateway (or the same one from another address)
        // takes over, or when we re-add the peer (after its removal or a wireguard-go restart). A restart on
        // the far side alone is not visible here (it shows in the far side's saId).
        saId: up ? `${l.publicKey}@${l.endpoint ?? "(none)"}#${this.generations.get(l.publicKey) ?? 0}` : null,
        bytesIn: l.rxBytes,
        bytesOut: l.txBytes,
        lastError: err ?? (up ? null : why),
      };
    });
    return { driver: this.name, peers };
  }

  async cleanup(): Promise<void> {
    for (const key of [...this.nudges.keys()]) this.cancelNudge(key);
    await this.stopDaemon();
    if (this.started) {
      // wireguard-go's TUN goes with its process; delete it only if something kept it.
      const dev = linkNamed(this.net, this.tunnelDev);
      if (dev) this.net.delLink(dev.index, this.tunnelDev);
      this.started = false;
    }
    if (this.anchored) ensureAnchors(this.net, []);
    this.anchored = false;
    this.generations.clear();
    this.wanted = [];
    this.peerErrors.clear();
    this.net.close();
    rmSync(this.o.stateDir, { recursive: true, force: true });
  }

  /**
   * RESPONDER_NUDGE_MS after this side added a peer it responds to, one initiation from here unless a handshake
   * came meanwhile (see wireguard-conf.ts). Failures are left to WireGuard's own retries and the next apply.
   */
  private armNudge(publicKey: string): void {
    this.cancelNudge(publicKey);
    const timer = this.clock.setTimeout(() => {
      this.nudges.delete(publicKey);
      void this.nudge(publicKey).catch(() => undefined);
    }, RESPONDER_NUDGE_MS);
    this.nudges.set(publicKey, timer);
  }

  private cancelNudge(publicKey: string): void {
    const t = this.nudges.get(publicKey);
    if (t !== undefined) this.clock.clearTimeout(t);
    this.nudges.delete(publicKey);
  }

  private async nudge(publicKey: string): Promise<void> {
    const pid = this.pid;
    if (pid === undefined || !this.wanted.some((w) => w.publicKey === publicKey && w.keepaliveSec === 0)) return;
    const live = (await this.dump(pid)).peers.find((p) => p.publicKey === publicKey);
    if (!live || live.latestHandshakeSec > 0) return;
    for (const lines of uapiNudge(publicKey)) await this.set(pid, lines);
    this.nudged++;
  }

  /** The last `n` lines of wireguard-go's output, for diagnostics. */
  logTail(n = 3): string {
    try {
      return readFileSync(this.files.log, "utf8").trim().split("\n").slice(-n).join(" | ") || "(empty)";
    } catch {
      return "(empty)";
    }
  }

  private allDown(why: string): VpnStatus {
    return {
      driver: this.name,
      peers: this.wanted.map((w) => ({
        name: w.name,
        state: PeerState.Down,
        saId: null,
        bytesIn: null,
        bytesOut: null,
        lastError: this.peerErrors.get(w.name) ?? why,
      })),
    };
  }

  private async dump(pid: number): Promise<WgDeviceDump> {
    return parseUapiGet(await this.uapi(pid, "get=1\n\n"));
  }

  private async set(pid: number, lines: readonly string[]): Promise<void> {
    const errno = uapiErrno(await this.uapi(pid, uapiSet(lines)));
    if (errno !== 0)
      throw new TunnelError(`wireguard: ${lines[0]?.split("=")[0] ?? "set"} refused by wireguard-go (errno ${errno})`);
  }

  /** One UAPI exchange: the request, then the reply up to the blank line that ends it. */
  private uapi(pid: number, request: string, timeoutMs = 5_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const sock = connect(this.socketOf(pid));
      let reply = "";
      const done = (err: Error | null) => {
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(new TunnelError(`wireguard: UAPI of ${this.tunnelDev}: ${describeError(err)}`, { cause: err }));
        else resolve(reply);
      };
      const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      sock.setEncoding("utf8");
      sock.on("connect", () => sock.write(request));
      sock.on("data", (chunk: string) => {
        reply += chunk;
        if (reply.endsWith("\n\n")) done(null);
      });
      sock.on("error", (err) => done(err));
      sock.on("close", () => done(new Error("connection closed before the reply ended")));
    });
  }

  /** The device's MTU is underlayMtu - overhead and it is up. */
  private ensureLink(): void {
    const link = linkNamed(this.net, this.tunnelDev);
    if (!link)
      throw new TunnelError(
        `wireguard: wireguard-go runs but its device ${this.tunnelDev} is not there; log: ${this.logTail()}`,
      );
    if (link.mtu === this.deviceMtu && link.up) return;
    this.net.setLink(link.index, this.tunnelDev, { mtu: this.deviceMtu, up: true });
    this.changes++;
  }

  /** Starts wireguard-go unless it runs; resolves with its PID once its UAPI socket accepts connections. */
  private async ensureDaemon(): Promise<number> {
    if (this.daemon && this.daemon.exitInfo === null) return this.daemon.pid;
    mkdirSync(this.o.stateDir, { recursive: true, mode: 0o700 });
    chmodSync(this.o.stateDir, 0o700);
    // child.pid is wireguard-go's (nsenter and the kill in cleanup rely on it); its UAPI socket is in the private /run.
    const argv = daemonArgv({
      netns: this.o.netns,
      deathSignal: "KILL",
      run: { size: "1m", name: "raven-wireguard" },
      command: this.o.wireguardGoPath,
      args: ["-f", this.tunnelDev],
    });
    const out = openSync(this.files.log, "a", 0o600);
    // WG_PROCESS_FOREGROUND also silences the banner telling Linux users to use the kernel module.
    const env = { ...process.env, WG_PROCESS_FOREGROUND: "1", LOG_LEVEL: "error" };
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", out, out], env });
    closeSync(out);
    const daemon: WgDaemon = Object.assign(watchDaemon(child, "wireguard-go"), { pid: child.pid ?? -1 });
    this.daemon = daemon;
    this.started = true;
    this.starts++;
    // The socket as wireguard-go sees it: /proc/<pid>/root crosses into its mount namespace.
    const socket = this.socketOf(daemon.pid);
    try {
      await waitForSocket(daemon, `the UAPI socket of ${this.tunnelDev}`, socket, this.o.startTimeoutMs);
    } catch (err) {
      await this.stopDaemon();
      throw new TunnelError(`wireguard: ${describeError(err)}; log: ${this.logTail()}`, { cause: err });
    }
    return daemon.pid;
  }

  private async stopDaemon(): Promise<void> {
    const d = this.daemon;
    this.daemon = null;
    await stopDaemon(d);
  }
}
