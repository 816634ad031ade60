// The strongSwan VpnDriver: one private charon per gateway, configured over that charon's own vici socket
// (vici.ts: no swanctl process per step; `swanctl --uri unix://<stateDir>/charon.vici` still works by
// hand). IKEv2 + PSK, ESP in UDP 4500; kernel ESP where the kernel has it, else kernel-libipsec
// (userspace ESP on a TUN device `ipsec0`, with routes to it in table 220 that charon installs itself).
//
// Guarantees:
// - Several drivers coexist on one machine: each charon runs in the caller's network namespace (`ip netns
//   exec`), in its own mount namespace with a private tmpfs on /run (charon's pid file is compiled in as
//   /run/charon.pid), with its own strongswan.conf (STRONGSWAN_CONF) and vici socket in `stateDir`.
// - charon is started with a parent-death signal (setpriv --pdeathsig): if the owning process dies without
//   cleanup(), charon goes with it rather than holding the namespace and the ports.
// - apply is idempotent: each peer's connection and PSK are loaded when they differ from what the running
//   charon has (a new charon has nothing); a peer is (re)initiated only when it has no IKE SA at all and this
//   side initiates. Peers whose connection changed are re-keyed; removed peers are terminated and unloaded.
//   Errors of one peer (charon refusing its connection, a failed initiation) land in its status
//   (lastError), not in an exception.
// - The gateway's anchors (anchors.ts: each local subnet's network address on `lo`) are kept with the peers:
//   kernel-libipsec refuses a CHILD_SA whose local subnet holds no address of this host, and the latency
//   probe pings between the anchors; cleanup removes them.
// - The PSK is read from `pskFile` on every apply (a rotation is a change). The file must exist, be private
//   (no group/other permissions) and hold at least 16 bytes; there is no built-in default.
// - cleanup() stops charon by its PID (TERM, then KILL after a grace period) and removes stateDir.
//
// Over 400 lines, one concept: the driver against one charon. Its pure half (strongswan.conf, vici messages,
// SA parsing) is strongswan-conf.ts, what the host offers (packages, kernel ESP) strongswan-host.ts.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { TunnelError, describeError } from "../../shared/errors";
import { readPsk } from "./psk";
import { ensureAnchors } from "./anchors";
import { linkNamed, NetlinkNet, type KernelNet } from "../kernel";
import { writePrivate } from "./files";
import { daemonArgv, stopDaemon, waitForSocket, watchDaemon, type Daemon } from "./daemon";
import {
  DEFAULT_CHARON,
  LIBIPSEC_TUN,
  LIBIPSEC_TUN_MTU,
  VICI_PLUGIN,
  checkStrongSwanInstalled,
  kernelHasEsp,
  strongSwanOverheadBytes,
} from "./strongswan-host";
import {
  connectionMessage,
  ikeSasOf,
  renderStrongswanConf,
  sharedKeyId,
  sharedKeyMessage,
  uncoveredSubnets,
  type IkeSaInfo,
} from "./strongswan-conf";
import {
  checkSuccess,
  viciCall,
  ViciClient,
  ViciError,
  type ViciCallOptions,
  type ViciMessage,
  type ViciReply,
  type ViciSection,
} from "./vici";
import {
  PeerState,
  initiates,
  validateVpnDesired,
  type VpnDesired,
  type VpnDriver,
  type VpnPeer,
  type VpnPeerStatus,
  type VpnStatus,
} from "./vpn-driver";

export type EspMode = "kernel" | "libipsec" | "auto";

export type StrongSwanOptions = Readonly<{
  /** Absolute directory owned by this driver (created 0700, removed by cleanup). Not under /run: charon's /run is private. */
  stateDir: string;
  /** File holding the pre-shared key (see ensurePskFile). */
  pskFile: string;
  /** Network namespace charon runs in; the current one when left out. */
  netns?: string;
  name?: string;
  /** "auto" (default): kernel ESP when the kernel has it (esp4), else kernel-libipsec. */
  esp?: EspMode;
  /** MTU of the underlay; kernel-libipsec's TUN gets underlayMtu - IPSEC_OVERHEAD_BYTES. Default 1500. */
  underlayMtu?: number;
  ikePort?: number;
  natPort?: number;
  /** How long apply waits for one initiation before reporting the peer as connecting. Default 5 s. */
  initiateTimeoutSec?: number;
  /** How long to wait for charon's vici socket after start. Default 10 s. */
  startTimeoutMs?: number;
  charonPath?: string;
  /** The vici plugin charon must load (checked before charon starts). */
  viciPluginPath?: string;
  /** The namespace's kernel state (default: rtnetlink in `netns`); tests pass a FakeNet. */
  net?: KernelNet;
  /** Starts charon from its argv and environment, output to `outFd` (default: spawn). Tests start a stand-in. */
  launch?: CharonLauncher;
}>;

export type CharonLauncher = (argv: readonly string[], env: NodeJS.ProcessEnv, outFd: number) => ChildProcess;

const spawnCharon: CharonLauncher = (argv, env, outFd) =>
  spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", outFd, outFd], env });

/**
 * What an SA of `p` fails to cover when its initiator should end it, or "" (see apply): judged only on the
 * initiating side, and only when every installed child of the peer is narrow (while a rekey installs a new
 * child, the old one may still be listed).
 */
function narrowness(sa: IkeSaInfo, p: VpnPeer): string {
  if (!initiates(p)) return "";
  const uncovered = sa.children
    .filter((c) => c.name === p.name && c.state === "INSTALLED")
    .map((c) => uncoveredSubnets(c, p.localSubnets, p.remoteSubnets));
  return uncovered.length > 0 && uncovered.every((u) => u !== "") ? uncovered[0]! : "";
}

export class StrongSwanDriver implements VpnDriver {
  readonly name: string;
  /**
   * What the tunnel costs on this underlay: IPSEC_OVERHEAD_BYTES with kernel ESP; with kernel-libipsec at
   * least underlayMtu - 1400, because strongSwan 5.9 creates its TUN with a fixed MTU of 1400 (no option;
   * raising it by hand breaks libipsec's reads, lowering it works and is done when the underlay is smaller).
   */
  readonly overheadBytes: number;
  readonly libipsec: boolean;
  /** Null: charon routes remote subnets itself (kernel-libipsec: into its TUN, table 220; kernel ESP: policies). */
  readonly tunnelDev = null;
  /** Times apply reloaded charon's configuration / initiated a peer (for tests and metrics: churn). */
  reloads = 0;
  initiations = 0;
  /** SAs apply terminated because they covered fewer subnets than configured. */
  narrowed = 0;
  private readonly o: Required<Omit<StrongSwanOptions, "netns" | "name" | "esp" | "net" | "launch">> & {
    netns: string | undefined;
  };
  private readonly launch: CharonLauncher;
  private readonly net: KernelNet;
  private viciClient: ViciClient | null = null;
  private charon: Daemon | null = null;
  /** What the running charon has loaded: the PSK's SHA-256 and each peer's connection message (JSON). */
  private loaded: { pskId: string; peers: Map<string, string> } | null = null;
  private readonly peerErrors = new Map<string, string>();
  private desired: readonly VpnPeer[] = [];
  /** Whether `lo:raven` addresses may exist (so cleanup touches the namespace only when it must). */
  private anchored = false;

  constructor(options: StrongSwanOptions) {
    if (!isAbsolute(options.stateDir))
      throw new TunnelError(`strongswan: stateDir ${JSON.stringify(options.stateDir)} must be absolute`);
    const stateDir = resolve(options.stateDir);
    if (stateDir === "/run" || stateDir.startsWith("/run/") || stateDir.startsWith("/var/run/")) {
      throw new TunnelError(
        `strongswan: stateDir ${stateDir} is under /run, which each charon replaces with a private tmpfs; pick another directory`,
      );
    }
    this.name = options.name ?? "strongswan";
    const esp = options.esp ?? "auto";
    this.libipsec = esp === "libipsec" || (esp === "auto" && !kernelHasEsp());
    this.o = {
      stateDir,
      pskFile: options.pskFile,
      netns: options.netns,
      underlayMtu: options.underlayMtu ?? 1500,
      ikePort: options.ikePort ?? 500,
      natPort: options.natPort ?? 4500,
      initiateTimeoutSec: options.initiateTimeoutSec ?? 5,
      startTimeoutMs: options.startTimeoutMs ?? 10_000,
      charonPath: options.charonPath ?? DEFAULT_CHARON,
      viciPluginPath: options.viciPluginPath ?? VICI_PLUGIN,
    };
    this.net = options.net ?? new NetlinkNet(options.netns);
    this.launch = options.launch ?? spawnCharon;
    this.overheadBytes = strongSwanOverheadBytes(this.o.underlayMtu, !this.libipsec);
  }

  private get files() {
    const d = this.o.stateDir;
    return { conf: join(d, "strongswan.conf"), vici: join(d, "charon.vici"), log: join(d, "charon.log") };
  }

  /** The PID of the running charon, if any. */
  get pid(): number | undefined {
    return this.charon && this.charon.exitInfo === null ? this.charon.child.pid : undefined;
  }

  /** A quick command on the driver's one long-lived vici connection. */
  private vici(command: string, request: ViciSection = {}, options?: ViciCallOptions): Promise<ViciReply> {
    this.viciClient ??= new ViciClient(this.files.vici);
    return this.viciClient.call(command, request, options);
  }

  async apply(desired: VpnDesired): Promise<VpnStatus> {
    validateVpnDesired(desired);
    checkStrongSwanInstalled({ charon: this.o.charonPath, vici: this.o.viciPluginPath, libipsec: this.libipsec });
    const psk = readPsk(this.o.pskFile);
    await this.ensureCharon();
    this.anchored = true;
    ensureAnchors(
      this.net,
      desired.peers.flatMap((p) => p.localSubnets),
    );
    const peers = [...desired.peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.desired = peers;
    const pskId = createHash("sha256").update(psk).digest("hex");
    const before = this.loaded?.pskId === pskId ? this.loaded.peers : new Map<string, string>();
    const now = new Map(peers.map((p) => [p.name, JSON.stringify(connectionMessage(p))]));
    const toLoad = peers.filter((p) => before.get(p.name) !== now.get(p.name));
    const gone = [...(this.loaded?.peers.keys() ?? [])].filter((name) => !now.has(name));
    const failed = new Set<string>();
    if (toLoad.length > 0 || gone.length > 0) {
      // The SAs of gone and changed peers, by id: the changed ones are initiated again below, and a
      // termination by name could hit the new SA. (A new PSK reloads every peer but re-keys none: a
      // rotation applies from the next exchange.)
      const old = this.loaded?.peers;
      const stale = new Set([
        ...gone,
        ...toLoad.filter((p) => old?.has(p.name) && old.get(p.name) !== now.get(p.name)).map((p) => p.name),
      ]);
      const staleIds =
        stale.size > 0 ? (await this.listSas()).filter((s) => stale.has(s.name)).map((s) => s.uniqueId) : [];
      // Secrets first, so that a connection never meets a peer without its key. A peer charon refuses is that
      // peer's error (it is not loaded, so the next apply tries again); the others go on.
      for (const p of toLoad) {
        try {
          checkSuccess("load-shared", await this.vici("load-shared", sharedKeyMessage(p, psk)));
          checkSuccess("load-conn", await this.vici("load-conn", connectionMessage(p)));
          this.peerErrors.delete(p.name);
        } catch (err) {
          failed.add(p.name);
          this.peerErrors.set(
            p.name,
            `not loaded: ${err instanceof ViciError ? `${err.command}: ${err.detail}` : (err as Error).message}`,
          );
        }
      }
      // Best effort: what charon no longer has (a restart, an earlier partial unload) is already gone.
      for (const name of gone) {
        await this.vici("unload-conn", { name }).catch(() => undefined);
        await this.vici("unload-shared", { id: sharedKeyId(name) }).catch(() => undefined);
        this.peerErrors.delete(name);
      }
      this.reloads++;
      for (const id of staleIds) await this.terminate(id);
      for (const name of failed) now.delete(name);
      this.loaded = { pskId, peers: now };
    }
    let sas = await this.listSas();
    // An SA that covers fewer subnets than the peer's connection now lists (negotiated while one side still
    // had an older view) is ended by its initiator, which starts it again below. Left alone, charon would keep
    // it, and the missing pod CIDRs would have no path. Only the initiator acts: a responder's termination
    // reaches the initiator as one DELETE, and a lost one left the initiator holding a dead SA until DPD; a
    // responder with the newer view is repaired when the initiator's own view catches up (its connection
    // changes, which re-keys it). One that comes out of this apply's own initiation narrow again is reported
    // down (statusFrom), so the caller's backoff, not a loop here, paces the next try.
    const narrow = sas.filter((s) => {
      const p = peers.find((x) => x.name === s.name);
      return !!p && narrowness(s, p) !== "";
    });
    if (narrow.length > 0) {
      this.narrowed += narrow.length;
      for (const s of narrow) await this.terminate(s.uniqueId);
      sas = await this.listSas();
    }
    // Initiations run side by side: each waits for its peer's answer, and a takeover starts several at once.
    const toStart = peers.filter((p) => initiates(p) && !failed.has(p.name) && !sas.some((s) => s.name === p.name));
    await Promise.all(toStart.map((p) => this.initiate(p.name)));
    if (toStart.length > 0) sas = await this.listSas();
    return this.statusFrom(sas);
  }

  async status(): Promise<VpnStatus> {
    if (!this.charon || this.charon.exitInfo !== null) {
      const why = this.charon?.exitInfo ?? "charon is not running";
      return { driver: this.name, peers: this.desired.map((p) => peerStatus(p.name, PeerState.Down, null, why)) };
    }
    return this.statusFrom(await this.listSas());
  }

  async cleanup(): Promise<void> {
    await this.stopCharon();
    if (this.anchored) ensureAnchors(this.net, []);
    this.anchored = false;
    this.loaded = null;
    this.desired = [];
    this.peerErrors.clear();
    this.net.close();
    rmSync(this.o.stateDir, { recursive: true, force: true });
  }

  private statusFrom(sas: readonly IkeSaInfo[]): VpnStatus {
    const peers = this.desired.map((p): VpnPeerStatus => {
      const mine = sas.filter((s) => s.name === p.name);
      const up = mine.find(
        (s) => s.state === "ESTABLISHED" && s.children.some((c) => c.name === p.name && c.state === "INSTALLED"),
      );
      const uncovered = up ? narrowness(up, p) : "";
      if (uncovered !== "") {
        // Up, but too narrow to carry every pod CIDR: down for the initiator, who renegotiates (apply ends it).
        return peerStatus(p.name, PeerState.Down, null, `security association does not cover ${uncovered}`);
      }
      if (up) {
        this.peerErrors.delete(p.name);
        const children = up.children.filter((c) => c.name === p.name && c.state === "INSTALLED");
        return {
          name: p.name,
          state: PeerState.Up,
          saId: `${up.uniqueId}/${children.map((c) => c.uniqueId).join(",")}`,
          bytesIn: children.reduce((s, c) => s + c.bytesIn, 0),
          bytesOut: children.reduce((s, c) => s + c.bytesOut, 0),
          lastError: null,
        };
      }
      const err = this.peerErrors.get(p.name) ?? null;
      // An initiation that failed and left no SA behind is down (the caller retries), not still connecting;
      // a responder without SA is connecting: its peer is the one to start.
      if (err !== null && mine.length === 0) return peerStatus(p.name, PeerState.Down, null, err);
      return peerStatus(
        p.name,
        PeerState.Connecting,
        null,
        mine.length > 0 || initiates(p) ? err : "waiting for the peer to initiate",
      );
    });
    return { driver: this.name, peers };
  }

  private async listSas(): Promise<IkeSaInfo[]> {
    return ikeSasOf((await this.vici("list-sas", { noblock: "yes" }, { stream: "list-sa" })).events);
  }

  private async initiate(name: string): Promise<void> {
    this.initiations++;
    const timeoutMs = this.o.initiateTimeoutSec * 1000;
    try {
      // Its own connection: it waits for the peer, and status reads must not wait behind it.
      const reply = await viciCall(
        this.files.vici,
        "initiate",
        { ike: name, child: name, timeout: String(timeoutMs), loglevel: "1" },
        { stream: "control-log", timeoutMs: timeoutMs + 5_000 },
      );
      checkSuccess("initiate", reply, controlLogTail(reply.events));
      this.peerErrors.delete(name);
    } catch (err) {
      this.peerErrors.set(name, `initiate failed: ${err instanceof ViciError ? err.detail : (err as Error).message}`);
    }
  }

  private async terminate(ikeId: string): Promise<void> {
    // Forced: the peer of a changed connection is usually gone (that is why it changed), so waiting for its
    // answer would only delay the new initiation. Nothing left to terminate is fine.
    await this.vici("terminate", { "ike-id": ikeId, force: "yes", timeout: "-1" }).catch(() => undefined);
  }

  private async ensureCharon(): Promise<void> {
    if (this.charon && this.charon.exitInfo === null) return;
    this.loaded = null;
    this.viciClient?.close(); // it spoke to a charon that is gone
    this.viciClient = null;
    const f = this.files;
    mkdirSync(this.o.stateDir, { recursive: true, mode: 0o700 });
    chmodSync(this.o.stateDir, 0o700);
    rmSync(f.vici, { force: true });
    writePrivate(
      f.conf,
      renderStrongswanConf({
        viciSocket: f.vici,
        logFile: f.log,
        libipsec: this.libipsec,
        ikePort: this.o.ikePort,
        natPort: this.o.natPort,
      }),
    );
    // The private /run holds charon's pid file (compiled in as /run/charon.pid); the vici socket is in stateDir.
    const argv = daemonArgv({
      netns: this.o.netns,
      deathSignal: "TERM",
      run: { size: "16m", name: "raven-charon" },
      command: this.o.charonPath,
    });
    const out = openSync(join(this.o.stateDir, "charon.stdout"), "a", 0o600);
    const child = this.launch(argv, { ...process.env, STRONGSWAN_CONF: f.conf }, out);
    closeSync(out);
    const charon = watchDaemon(child, "charon");
    this.charon = charon;
    try {
      await waitForSocket(charon, `charon's vici socket ${f.vici}`, f.vici, this.o.startTimeoutMs);
    } catch (err) {
      await this.stopCharon();
      throw new TunnelError(`strongswan: ${describeError(err)}; log: ${this.logTail()}`, { cause: err });
    }
    const tunMtu = this.o.underlayMtu - this.overheadBytes;
    if (this.libipsec && tunMtu < LIBIPSEC_TUN_MTU) {
      const tun = linkNamed(this.net, LIBIPSEC_TUN);
      if (!tun)
        throw new TunnelError(`strongswan: charon started without its ${LIBIPSEC_TUN} device; log: ${this.logTail()}`);
      this.net.setLink(tun.index, LIBIPSEC_TUN, { mtu: tunMtu });
    }
  }

  /** The last `n` lines of charon's log, for diagnostics ("(empty)" when there is none). */
  logTail(n = 3): string {
    for (const f of [this.files.log, join(this.o.stateDir, "charon.stdout")]) {
      try {
        const t = lastLines(readFileSync(f, "utf8"), n);
        if (t) return t;
      } catch {
        // not written
      }
    }
    return "(empty)";
  }

  private async stopCharon(): Promise<void> {
    const c = this.charon;
    this.charon = null;
    this.viciClient?.close();
    this.viciClient = null;
    await stopDaemon(c);
  }
}

function peerStatus(name: string, state: PeerState, saId: string | null, lastError: string | null): VpnPeerStatus {
  return { name, state, saId, bytesIn: null, bytesOut: null, lastError };
}

/** The last `n` control-log lines of an initiation, as swanctl prints them ("[IKE] received …"). */
function controlLogTail(events: readonly ViciMessage[], n = 3): string {
  return events
    .slice(-n)
    .map((e) => `[${typeof e.group === "string" ? e.group : "?"}] ${typeof e.msg === "string" ? e.msg : ""}`)
    .join(" | ");
}

function lastLines(text: string, n = 3): string {
  return text
    .trim()
    .split("\n")
    .filter((l) => !/^plugin '.*': failed to load/.test(l))
    .slice(-n)
    .join(" | ");
}
