// A client of charon's vici socket (strongSwan's Versatile IKE Control Interface), so that the strongSwan
// driver talks to its charon directly instead of starting a swanctl process per step: a failover waits on
// those steps, and status is read every few hundred milliseconds.
//
// Wire format (src/libcharon/plugins/vici/README.md), all lengths big-endian:
//   segment   u32 length, then that many bytes (at most 512 KiB): one packet
//   packet    u8 type; CMD_REQUEST, EVENT_REGISTER, EVENT_UNREGISTER and EVENT carry u8 name length + name;
//             CMD_REQUEST, CMD_RESPONSE and EVENT then carry a message (the rest of the segment)
//   message   elements: SECTION_START u8-name, SECTION_END, KEY_VALUE u8-name u16-value, LIST_START u8-name,
//             LIST_ITEM u16-value, LIST_END; values are raw bytes (charon uses strings, numbers as text)
//
// One file on purpose (it passes 400 lines): the codec and the client of one protocol, each message type's
// encoder beside its decoder; the client is the codec's only user.
//
// Guarantees:
// - ViciClient keeps one connection for the quick commands, one call at a time (vici answers one command at a
//   time per connection); viciCall opens a connection of its own, so that an initiation that waits for its
//   peer never holds up a status read or another initiation. A connect refused by charon's full accept queue
//   (EAGAIN, a busy daemon) is tried again with backoff.
// - A streamed command (list-sas, initiate) registers its event first and returns the events that arrived
//   before the response, in order.
// - Every failure is a ViciError (a TunnelError) naming the command: a request that cannot be encoded,
//   socket errors, an unknown command or event, a malformed or oversized packet, the connection closing
//   early, the call's timeout, and charon's own `success = no`.
import { connect, type Socket } from "node:net";
import { assertNever, TunnelError } from "../../shared/errors";

export type ViciValue = string | Buffer | readonly string[] | ViciSection;
export interface ViciSection {
  readonly [key: string]: ViciValue;
}
/** A decoded message: values are strings (charon's encoding), lists string arrays. */
export type ViciMessage = { [key: string]: string | string[] | ViciMessage };

export const Packet = {
  CmdRequest: 0,
  CmdResponse: 1,
  CmdUnknown: 2,
  EventRegister: 3,
  EventUnregister: 4,
  EventConfirm: 5,
  EventUnknown: 6,
  Event: 7,
} as const;
export type Packet = (typeof Packet)[keyof typeof Packet];
const Element = { SectionStart: 1, SectionEnd: 2, KeyValue: 3, ListStart: 4, ListItem: 5, ListEnd: 6 } as const;
const VICI_MAX_SEGMENT = 512 * 1024;

/** A vici command that charon refused or could not carry out; `detail` is what charon said, without the command. */
export class ViciError extends TunnelError {
  constructor(
    readonly command: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`vici ${command}: ${detail}`, options);
    this.name = "ViciError";
  }
}

/** Sets a key as an own property (a key named "__proto__" from the wire must not touch the prototype). */
function setKey(obj: ViciMessage, key: string, value: ViciMessage[string]): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

class Writer {
  private readonly parts: Buffer[] = [];
  u8(v: number): void {
    this.parts.push(Buffer.from([v]));
  }
  name(n: string): void {
    const b = Buffer.from(n, "ascii");
    if (b.length === 0 || b.length > 255) throw new TunnelError(`vici: name ${JSON.stringify(n)} must be 1-255 bytes`);
    this.u8(b.length);
    this.parts.push(b);
  }
  value(v: string | Buffer, key: string): void {
    const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
    if (b.length > 0xffff) throw new TunnelError(`vici: value of ${key} is ${b.length} bytes (at most 65535)`);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    this.parts.push(len, b);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function writeSection(w: Writer, section: ViciSection): void {
  for (const [key, v] of Object.entries(section)) {
    if (typeof v === "string" || Buffer.isBuffer(v)) {
      w.u8(Element.KeyValue);
      w.name(key);
      w.value(v, key);
    } else if (Array.isArray(v)) {
      w.u8(Element.ListStart);
      w.name(key);
      for (const item of v as readonly string[]) {
        w.u8(Element.ListItem);
        w.value(item, key);
      }
      w.u8(Element.ListEnd);
    } else {
      w.u8(Element.SectionStart);
      w.name(key);
      writeSection(w, v as ViciSection);
      w.u8(Element.SectionEnd);
    }
  }
}

export function encodeMessage(message: ViciSection): Buffer {
  const w = new Writer();
  writeSection(w, message);
  return w.bytes();
}

/** Decodes one message; a TunnelError for anything that is not a well-formed one. */
export function decodeMessage(buf: Buffer): ViciMessage {
  const root: ViciMessage = {};
  const stack: ViciMessage[] = [root];
  let list: string[] | null = null;
  let at = 0;
  const need = (n: number) => {
    if (at + n > buf.length) throw new TunnelError(`vici: message truncated at byte ${at} of ${buf.length}`);
  };
  const name = () => {
    need(1);
    const len = buf[at++]!;
    need(len);
    const s = buf.toString("ascii", at, at + len);
    at += len;
    return s;
  };
  const value = () => {
    need(2);
    const len = buf.readUInt16BE(at);
    at += 2;
    need(len);
    const s = buf.toString("utf8", at, at + len);
    at += len;
    return s;
  };
  while (at < buf.length) {
    const type = buf[at++]!;
    const top = stack[stack.length - 1]!;
    if (list !== null && type !== Element.ListItem && type !== Element.ListEnd)
      throw new TunnelError(`vici: element ${type} inside a list at byte ${at - 1}`);
    switch (type) {
      case Element.SectionStart: {
        const s: ViciMessage = {};
        setKey(top, name(), s);
        stack.push(s);
        break;
      }
      case Element.SectionEnd:
        if (stack.length === 1) throw new TunnelError(`vici: section end without a section at byte ${at - 1}`);
        stack.pop();
        break;
      case Element.KeyValue: {
        const k = name();
        setKey(top, k, value());
        break;
      }
      case Element.ListStart:
        list = [];
        setKey(top, name(), list);
        break;
      case Element.ListItem:
        if (list === null) throw new TunnelError(`vici: list item outside a list at byte ${at - 1}`);
        list.push(value());
        break;
      case Element.ListEnd:
        if (list === null) throw new TunnelError(`vici: list end outside a list at byte ${at - 1}`);
        list = null;
        break;
      default:
        throw new TunnelError(`vici: unknown element type ${type} at byte ${at - 1}`);
    }
  }
  if (stack.length !== 1 || list !== null) throw new TunnelError("vici: message ends inside a section or list");
  return root;
}

/** One packet as a length-prefixed segment. */
export function encodePacket(type: Packet, name?: string, message?: ViciSection): Buffer {
  const w = new Writer();
  w.u8(type);
  if (name !== undefined) w.name(name);
  const body = Buffer.concat([w.bytes(), message ? encodeMessage(message) : Buffer.alloc(0)]);
  if (body.length > VICI_MAX_SEGMENT)
    throw new TunnelError(`vici: packet of ${body.length} bytes exceeds ${VICI_MAX_SEGMENT}`);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/** The packets charon sends a client. */
export type ViciPacket =
  | Readonly<{ type: typeof Packet.CmdResponse; message: ViciMessage }>
  | Readonly<{ type: typeof Packet.CmdUnknown | typeof Packet.EventConfirm | typeof Packet.EventUnknown }>
  | Readonly<{ type: typeof Packet.Event; name: string; message: ViciMessage }>;

/** Decodes one segment's bytes (without the length) as a packet of the types charon sends. */
function decodePacket(seg: Buffer): ViciPacket {
  if (seg.length === 0) throw new TunnelError("vici: empty packet");
  const type = seg[0]!;
  switch (type) {
    case Packet.CmdResponse:
      return { type, message: decodeMessage(seg.subarray(1)) };
    case Packet.CmdUnknown:
    case Packet.EventConfirm:
    case Packet.EventUnknown:
      return { type };
    case Packet.Event: {
      const len = seg[1];
      if (len === undefined || 2 + len > seg.length) throw new TunnelError("vici: event name truncated");
      return { type, name: seg.toString("ascii", 2, 2 + len), message: decodeMessage(seg.subarray(2 + len)) };
    }
    default:
      throw new TunnelError(`vici: unexpected packet type ${type} from the daemon`);
  }
}

export type ViciCallOptions = Readonly<{
  /** Event streamed by the command (list-sas: "list-sa", initiate/terminate: "control-log"). */
  stream?: string;
  timeoutMs?: number;
}>;

export type ViciReply = Readonly<{ response: ViciMessage; events: ViciMessage[] }>;

/** Runs one command on its own connection to the vici socket at `socketPath`, closed when the call ends. */
export async function viciCall(
  socketPath: string,
  command: string,
  request: ViciSection = {},
  options: ViciCallOptions = {},
): Promise<ViciReply> {
  const conn = new ViciConnection(socketPath);
  try {
    return await conn.call(command, request, options);
  } finally {
    conn.close();
  }
}

/**
 * One long-lived connection for the quick commands (load, unload, list, terminate), opened on first use and
 * again after it failed: a status read every few seconds costs no connect, and a busy charon's accept queue
 * (EAGAIN) is met once, not once per command. Commands that wait for a peer (initiate) take viciCall.
 */
export class ViciClient {
  private conn: ViciConnection | null = null;
  /** Connections opened so far (one in a steady state). */
  connects = 0;

  constructor(readonly socketPath: string) {}

  call(command: string, request: ViciSection = {}, options: ViciCallOptions = {}): Promise<ViciReply> {
    if (!this.conn || this.conn.isClosed) {
      this.conn = new ViciConnection(this.socketPath);
      this.connects++;
    }
    return this.conn.call(command, request, options);
  }

  close(): void {
    this.conn?.close();
    this.conn = null;
  }
}

type QueuedCall = {
  command: string;
  stream: string | null;
  registerPacket: Buffer | null;
  requestPacket: Buffer;
  timeoutMs: number;
  events: ViciMessage[];
  resolve: (r: ViciReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
};

/** How often, and after how long, a connect that charon's full accept queue refused (EAGAIN) is tried again. */
const CONNECT_RETRIES = 6;
const CONNECT_RETRY_MS = 10;

/**
 * One connection to charon's vici socket. Calls run one at a time, in order (vici answers one command at a
 * time per connection); a streamed command registers its event once per connection. A timeout or a broken
 * connection fails the call in flight and every queued one, and closes the connection.
 */
class ViciConnection {
  private sock: Socket | null = null;
  private connected = false;
  private closed = false;
  private pending: Buffer = Buffer.alloc(0);
  private current: QueuedCall | null = null;
  private readonly queue: QueuedCall[] = [];
  private readonly registered = new Set<string>();
  private attempts = 0;

  constructor(private readonly socketPath: string) {
    this.open();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private open(): void {
    const sock = connect(this.socketPath);
    this.sock = sock;
    sock.on("connect", () => {
      this.connected = true;
      this.pump();
    });
    sock.on("data", (chunk: Buffer) => this.onData(chunk));
    sock.on("error", (err: NodeJS.ErrnoException) => {
      if (!this.connected && err.code === "EAGAIN" && this.attempts < CONNECT_RETRIES && !this.closed) {
        // charon's accept queue is full (a busy daemon): try again shortly instead of failing the apply.
        sock.destroy();
        const delay = CONNECT_RETRY_MS * 2 ** this.attempts++ * (0.5 + Math.random());
        setTimeout(() => !this.closed && this.open(), delay).unref();
        return;
      }
      this.fail(err);
    });
    sock.on("close", () => {
      if (this.sock === sock) this.fail(new TunnelError("connection closed before the response"));
    });
  }

  call(command: string, request: ViciSection, options: ViciCallOptions): Promise<ViciReply> {
    let requestPacket: Buffer;
    let registerPacket: Buffer | null;
    try {
      // Encoded before anything is sent: a request that cannot be encoded fails here, alone.
      requestPacket = encodePacket(Packet.CmdRequest, command, request);
      registerPacket = options.stream ? encodePacket(Packet.EventRegister, options.stream) : null;
    } catch (err) {
      return Promise.reject(new ViciError(command, (err as Error).message.replace(/^vici: /, ""), { cause: err }));
    }
    if (this.closed) return Promise.reject(new ViciError(command, "connection closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({
        command,
        stream: options.stream ?? null,
        registerPacket,
        requestPacket,
        timeoutMs: options.timeoutMs ?? 10_000,
        events: [],
        resolve,
        reject,
        timer: null,
      });
      this.pump();
    });
  }

  private pump(): void {
    if (this.current || !this.connected || this.closed) return;
    const c = this.queue.shift();
    if (!c) return;
    this.current = c;
    c.timer = setTimeout(() => this.fail(new TunnelError(`no answer within ${c.timeoutMs} ms`)), c.timeoutMs);
    this.sock!.write(c.stream && !this.registered.has(c.stream) ? c.registerPacket! : c.requestPacket);
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    try {
      while (this.pending.length >= 4) {
        const len = this.pending.readUInt32BE(0);
        if (len > VICI_MAX_SEGMENT) throw new TunnelError(`segment of ${len} bytes exceeds ${VICI_MAX_SEGMENT}`);
        if (this.pending.length < 4 + len) break;
        const seg = this.pending.subarray(4, 4 + len);
        this.pending = this.pending.subarray(4 + len);
        this.onPacket(decodePacket(seg));
        if (this.closed) return;
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private onPacket(p: ViciPacket): void {
    const c = this.current;
    if (!c) return; // an event of a finished call
    switch (p.type) {
      case Packet.EventConfirm:
        this.registered.add(c.stream!);
        this.sock!.write(c.requestPacket);
        return;
      case Packet.EventUnknown:
        return this.settle(new TunnelError(`charon has no event ${JSON.stringify(c.stream)}`));
      case Packet.CmdUnknown:
        return this.settle(new TunnelError("charon does not know this command"));
      case Packet.Event:
        if (p.name === c.stream) c.events.push(p.message);
        return;
      case Packet.CmdResponse:
        return this.settle(null, p.message);
      default:
        return assertNever(p, "vici packet");
    }
  }

  /** Ends the call in flight and starts the next. */
  private settle(err: Error | null, response?: ViciMessage): void {
    const c = this.current;
    if (!c) return;
    this.current = null;
    if (c.timer) clearTimeout(c.timer);
    if (err) c.reject(new ViciError(c.command, err.message.replace(/^vici: /, ""), { cause: err }));
    else c.resolve({ response: response!, events: c.events });
    this.pump();
  }

  /** Fails the call in flight and every queued one, and closes. */
  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true; // first: settling the call in flight must not start the next one
    this.settle(err);
    for (const c of this.queue.splice(0))
      c.reject(new ViciError(c.command, err.message.replace(/^vici: /, ""), { cause: err }));
    this.sock?.destroy();
    this.sock = null;
  }

  close(): void {
    this.fail(new TunnelError("connection closed"));
  }
}

/** A vici `success = no` reply (load-conn, initiate, …) as a ViciError with charon's errmsg; else nothing. */
export function checkSuccess(command: string, reply: ViciReply, detail = ""): void {
  if (reply.response.success === "yes") return;
  const errmsg = typeof reply.response.errmsg === "string" ? reply.response.errmsg : "failed";
  throw new ViciError(command, `${errmsg}${detail ? ` | ${detail}` : ""}`);
}
