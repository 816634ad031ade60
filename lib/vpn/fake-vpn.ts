// An in-memory VpnDriver for unit tests of whatever drives tunnels (TunnelActor wiring, the gateway's
// reconciler): it keeps the VpnDriver contract (validation, idempotence, removal of undesired peers) without
// any I/O, records every desired state applied, and lets a test inject failures.
//
// Semantics: a desired peer comes up at once unless a failure is injected for it; a peer whose definition
// changes gets a new saId (re-established), an unchanged one keeps its saId (no churn). `failNextApply`
// makes the next apply throw before changing anything; `failPeer` keeps a peer down with the given error
// until `healPeer`; `dropPeer` simulates the tunnel dying on its own (down until the next apply).
import { RavenError, ErrorCode } from "../../shared/errors";
import {
  PeerState,
  validateVpnDesired,
  type VpnDesired,
  type VpnDriver,
  type VpnPeer,
  type VpnPeerStatus,
  type VpnStatus,
} from "./vpn-driver";

type Entry = { peer: VpnPeer; key: string; state: PeerState; saId: string | null; lastError: string | null };

export class FakeVpnDriver implements VpnDriver {
  readonly name: string;
  readonly overheadBytes: number;
  readonly tunnelDev: string | null;
  /** Every desired state passed to apply (including ones that failed), in order. */
  readonly applied: VpnDesired[] = [];
  /** Peers (re)established by apply, in order: one entry per new SA. */
  readonly established: string[] = [];
  cleanups = 0;
  private readonly peers = new Map<string, Entry>();
  private nextApplyError: Error | null = null;
  private readonly peerErrors = new Map<string, string>();
  private sa = 0;

  constructor(options: Readonly<{ name?: string; overheadBytes?: number; tunnelDev?: string | null }> = {}) {
    this.name = options.name ?? "fake";
    this.overheadBytes = options.overheadBytes ?? 0;
    this.tunnelDev = options.tunnelDev ?? null;
  }

  /** The next apply throws `error` (default: a RavenError) and changes nothing. */
  failNextApply(error: Error = new RavenError(ErrorCode.Internal, "injected apply failure")): void {
    this.nextApplyError = error;
  }

  /** Peer `name` stays down with `error` (on this and later applies) until healPeer. */
  failPeer(name: string, error = "injected peer failure"): void {
    this.peerErrors.set(name, error);
    const e = this.peers.get(name);
    if (e) Object.assign(e, { state: PeerState.Down, saId: null, lastError: error });
  }

  healPeer(name: string): void {
    this.peerErrors.delete(name);
  }

  /** The tunnel to `name` dies by itself (peer rebooted, DPD timeout); the next apply re-establishes it. */
  dropPeer(name: string, error = "peer went away"): void {
    const e = this.peers.get(name);
    if (e) Object.assign(e, { state: PeerState.Down, saId: null, lastError: error });
  }

  async apply(desired: VpnDesired): Promise<VpnStatus> {
    this.applied.push(structuredClone(desired) as VpnDesired);
    validateVpnDesired(desired);
    if (this.nextApplyError) {
      const err = this.nextApplyError;
      this.nextApplyError = null;
      throw err;
    }
    const wanted = new Set(desired.peers.map((p) => p.name));
    for (const name of [...this.peers.keys()]) if (!wanted.has(name)) this.peers.delete(name);
    for (const peer of desired.peers) {
      const key = JSON.stringify(peer);
      let e = this.peers.get(peer.name);
      if (e && e.key !== key) e = undefined; // changed definition: re-establish
      const injected = this.peerErrors.get(peer.name);
      if (injected !== undefined) {
        this.peers.set(peer.name, { peer, key, state: PeerState.Down, saId: null, lastError: injected });
        continue;
      }
      if (e && e.state === PeerState.Up) continue;
      const saId = `fake-${++this.sa}`;
      this.established.push(peer.name);
      this.peers.set(peer.name, { peer, key, state: PeerState.Up, saId, lastError: null });
    }
    return this.status();
  }

  async status(): Promise<VpnStatus> {
    const peers: VpnPeerStatus[] = [...this.peers.values()]
      .map((e) => ({
        name: e.peer.name,
        state: e.state,
        saId: e.saId,
        bytesIn: null,
        bytesOut: null,
        lastError: e.lastError,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { driver: this.name, peers };
  }

  async cleanup(): Promise<void> {
    this.cleanups++;
    this.peers.clear();
  }
}
