// The gateway's handle on the native data path (native/, built by scripts/build-native.sh): `join` hands a
// channel's two sockets over to the relay thread, which moves the bytes from then on without JavaScript, and
// reports the channel's end once. The handover is exact: pending writes are flushed first; then, with no turn of
// the event loop in between, reading stops, whatever Node has read but not delivered goes ahead of what the
// relay will read, and the descriptors are duplicated before Node closes its own, so no byte is lost, reordered
// or sent twice.
//
// Sealed channels (between the gateways over TLS) use keys exported from the TLS connection (RFC 8446 §7.5),
// one per direction, bound to the channel id: the TLS handshake still authenticates the peer and the fleet CA
// still pins it; only the record layer moves out of Node. The TLS connection must be quiet when it is handed
// over: the side that is `gated` stops reading TLS as it sends its last TLS message and does not send until the
// other side's first frame arrives, and the other side hands over only after that last message.
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { ChannelError } from "../../../shared/errors";
import { loadNativeAddon } from "../../../shared/native-addon";

type Addon = {
  start(
    onEnded: (
      id: number,
      code: "PROTOCOL" | "CLOSED" | undefined,
      message: string,
      toPeer: number,
      toPlain: number,
    ) => void,
  ): void;
  open(o: {
    plainFd: number;
    peerFd: number;
    sealed: number;
    gated: number;
    sealKey?: Buffer;
    openKey?: Buffer;
    toPeer?: Buffer;
    toPlain?: Buffer;
  }): number;
  abort(id: number): void;
};

export type SealKeys = Readonly<{ seal: Buffer; open: Buffer }>;

export type JoinOptions = Readonly<{
  /** Sealed frames with these keys between the gateways; absent: the bytes as they are. */
  keys?: SealKeys;
  /** Send nothing sealed until the peer's first frame has arrived (the side that spoke last over TLS). */
  gated?: boolean;
  /** Plaintext for the peer before anything read from the plain socket (a request head already read). */
  toPeer?: Buffer;
  /** Bytes for the plain socket before anything from the peer (a proxy's own response line). */
  toPlain?: Buffer;
}>;

export type RelayEnd = Readonly<{ error?: Error; bytesToPeer: number; bytesToPlain: number }>;

/** A channel being handed over or relayed; `abort` resets it (its end is still reported). */
export type RelayedChannel = Readonly<{ abort: () => void }>;

/** How long a handover waits for a socket's pending writes (a client that does not read its CONNECT answer). */
const FLUSH_TIMEOUT_MS = 10_000;
const KEY_LABEL = "EXPORTER-raven-channel-v1";
const ADDON_FILE = "native/build/raven_relay.node";

/**
 * The two directions' keys of channel `id` over `tls`, exported from its TLS session. Both ends compute the
 * same 64 bytes; the first half seals the direction from the TLS client (the edge), the second the other.
 */
export function channelKeys(tls: TLSSocket, id: string, side: "client" | "server"): SealKeys {
  let k: Buffer;
  try {
    k = tls.exportKeyingMaterial(64, KEY_LABEL, Buffer.from(id, "utf8"));
  } catch (err) {
    throw new ChannelError("CLOSED", `channel ${id}: its TLS connection closed before the keys were derived`, {
      cause: err,
    });
  }
  const fromClient = k.subarray(0, 32);
  const fromServer = k.subarray(32, 64);
  return side === "client" ? { seal: fromClient, open: fromServer } : { seal: fromServer, open: fromClient };
}

/** Stops a socket's reading from the kernel now, keeping Node from restarting it (the relay reads from here on). */
export function stopReading(socket: Socket): void {
  const handle = (socket as unknown as { _handle?: { readStop?: () => number; reading?: boolean } })._handle;
  if (!handle?.readStop) return;
  handle.readStop();
  // net.Socket#_read restarts reading only when `reading` is false: leaving it true keeps the kernel's bytes
  // for the relay even if something calls read() on the socket.
  handle.reading = true;
}

export class NativeRelay {
  private readonly ends = new Map<number, (end: RelayEnd) => void>();

  private constructor(private readonly addon: Addon) {
    addon.start((id, code, message, toPeer, toPlain) => {
      const onEnd = this.ends.get(id);
      if (!onEnd) return;
      this.ends.delete(id);
      onEnd({
        error: code === undefined ? undefined : new ChannelError(code, message),
        bytesToPeer: toPeer,
        bytesToPlain: toPlain,
      });
    });
  }

  /** This thread's relay (a worker thread gets its own), started on first use. */
  static get(): NativeRelay {
    current ??= new NativeRelay(loadNativeAddon<Addon>(ADDON_FILE, "the proxy's native data path"));
    return current;
  }

  /**
   * Hands `plain` and `peer` over to the relay once their pending writes are flushed. `onEnd` runs exactly once:
   * when both directions have ended, when the channel broke or was aborted, or when the handover failed (either
   * socket closed first, or bytes that must not be there were read), in which case both sockets are destroyed.
   */
  join(plain: Socket, peer: Socket, opts: JoinOptions, onEnd: (end: RelayEnd) => void): RelayedChannel {
    // Shared with handOver: an abort before the relay has the channel is carried out as soon as it does.
    const state: HandOver = { id: null, aborted: false };
    plain.pause();
    stopReading(peer);
    this.handOver(plain, peer, opts, onEnd, state).catch((err) => {
      plain.destroy();
      peer.destroy();
      onEnd({ error: err as Error, bytesToPeer: 0, bytesToPlain: 0 });
    });
    return {
      abort: () => {
        state.aborted = true;
        if (state.id !== null) this.addon.abort(state.id);
        else {
          // Still flushing: the handover fails on the destroyed sockets and reports the end.
          plain.destroy();
          peer.destroy();
        }
      },
    };
  }

  private async handOver(
    plain: Socket,
    peer: Socket,
    opts: JoinOptions,
    onEnd: (end: RelayEnd) => void,
    state: HandOver,
  ): Promise<void> {
    await Promise.all([flushed(plain), flushed(peer)]);
    if (state.aborted) throw new ChannelError("CLOSED", "channel closed by the gateway before it was handed over");
    // From here to `open`, nothing yields to the event loop, so Node reads nothing more from either socket.
    stopReading(plain);
    const early = drain(plain);
    const fromPeer = drain(peer);
    if (fromPeer.length > 0 && opts.keys)
      throw new ChannelError("PROTOCOL", `${fromPeer.length} bytes arrived over TLS after the channel's handshake`);
    const toPeer = concat(opts.toPeer, early);
    const toPlain = concat(opts.toPlain, fromPeer);
    let id: number;
    try {
      id = this.addon.open({
        plainFd: fdOf(plain),
        peerFd: fdOf(peer),
        sealed: opts.keys ? 1 : 0,
        gated: opts.gated ? 1 : 0,
        sealKey: opts.keys?.seal,
        openKey: opts.keys?.open,
        toPeer: toPeer.length > 0 ? toPeer : undefined,
        toPlain: toPlain.length > 0 ? toPlain : undefined,
      });
    } catch (err) {
      throw new ChannelError("CLOSED", `the relay refused the channel: ${(err as Error).message}`, { cause: err });
    }
    this.ends.set(id, onEnd);
    state.id = id;
    // The relay holds duplicates: closing Node's descriptors sends nothing (no FIN, no TLS close_notify).
    plain.destroy();
    peer.destroy();
    if (state.aborted) this.addon.abort(id);
  }
}

type HandOver = { id: number | null; aborted: boolean };

let current: NativeRelay | undefined;

function fdOf(s: Socket): number {
  // A TLSSocket's handle wraps the TCP handle that owns the descriptor (`_parent`); a net.Socket's is that handle.
  const h = (s as unknown as { _handle?: { fd?: number; _parent?: { fd?: number } } })._handle;
  const fd = h?._parent?.fd ?? h?.fd;
  if (typeof fd !== "number" || fd < 0)
    throw new ChannelError("CLOSED", "the socket has no descriptor to hand over (already closed)");
  return fd;
}

/**
 * Resolves when everything written to `s` has reached the kernel (a write is counted in writableLength until
 * its callback); rejects if `s` closes first or its peer has not taken the bytes within FLUSH_TIMEOUT_MS.
 */
function flushed(s: Socket): Promise<void> {
  const deadline = performance.now() + FLUSH_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (s.destroyed) return reject(new ChannelError("CLOSED", "a channel's socket closed before it was handed over"));
      if (s.writableLength === 0) return resolve();
      if (performance.now() > deadline)
        return reject(
          new ChannelError(
            "TIMEOUT",
            `a channel's peer left ${s.writableLength} written bytes untaken for ${FLUSH_TIMEOUT_MS} ms`,
          ),
        );
      setTimeout(check, 2);
    };
    check();
  });
}

/** Whatever Node has read from `s` and not yet delivered. */
function drain(s: Socket): Buffer {
  const parts: Buffer[] = [];
  for (let chunk = s.read() as Buffer | null; chunk !== null; chunk = s.read() as Buffer | null) parts.push(chunk);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

function concat(a: Buffer | undefined, b: Buffer): Buffer {
  if (!a || a.length === 0) return b;
  return b.length === 0 ? a : Buffer.concat([a, b]);
}
