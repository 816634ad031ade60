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
// Guarantees:
// - One connection per call, closed when the call ends: vici answers one command at a time per connection,
//   and an initiation that waits for its peer must not hold up a status read or another initiation.
// - A streamed command (list-sas, initiate) registers its event first and returns the events that arrived
//   before the response, in order.
// - Every failure is a ViciError (a TunnelError) naming the command: a request that cannot be encoded,
//   socket errors, an unknown command or event, a malformed or oversized packet, the connection closing
//   early, the call's timeout, and charon's own `success = no`.
import { connect } from "node:net";
import { assertNever, TunnelError } from "../../shared/errors";

export type ViciValue = string | Buffer | readonly string[] | ViciSection;
export interface ViciSection {
  readonly [key: string]: ViciValue;
}
/** A decoded message: values are strings (charon's encoding), lists string arrays. */
export type ViciMessage = { [key: string]: string | string[] | ViciMessage };

export const Packet = { CmdRequest: 0, CmdResponse: 1, CmdUnknown: 2, EventRegister: 3, EventUnregister: 4, EventConfirm: 5, EventUnknown: 6, Event: 7 } as const;
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
    if (list !== null && type !== Element.ListItem && type !== Element.ListEnd) throw new TunnelError(`vici: element ${type} inside a list at byte ${at - 1}`);
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
  if (body.length > VICI_MAX_SEGMENT) throw new TunnelError(`vici: packet of ${body.length} bytes exceeds ${VICI_MAX_SEGMENT}`);
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

/** Runs one command on the vici socket at `socketPath` (own connection; see the header). */
export function viciCall(socketPath: string, command: string, request: ViciSection = {}, options: ViciCallOptions = {}): Promise<ViciReply> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  let requestPacket: Buffer;
  let registerPacket: Buffer | null;
  try {
    // Encoded before connecting: a request that cannot be encoded fails here, with nothing opened.
    requestPacket = encodePacket(Packet.CmdRequest, command, request);
    registerPacket = options.stream ? encodePacket(Packet.EventRegister, options.stream) : null;
  } catch (err) {
    return Promise.reject(new ViciError(command, (err as Error).message.replace(/^vici: /, ""), { cause: err }));
  }
  return new Promise((resolve, reject) => {
    const events: ViciMessage[] = [];
    let pending: Buffer = Buffer.alloc(0);
    let settled = false;
    const sock = connect(socketPath);
    const finish = (err: Error | null, response?: ViciMessage) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(new ViciError(command, err.message.replace(/^vici: /, ""), { cause: err }));
      else resolve({ response: response!, events });
    };
    const timer = setTimeout(() => finish(new TunnelError(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const onPacket = (p: ViciPacket) => {
      switch (p.type) {
        case Packet.EventConfirm:
          sock.write(requestPacket);
          return;
        case Packet.EventUnknown:
          return finish(new TunnelError(`charon has no event ${JSON.stringify(options.stream)}`));
        case Packet.CmdUnknown:
          return finish(new TunnelError("charon does not know this command"));
        case Packet.Event:
          if (p.name === options.stream) events.push(p.message);
          return;
        case Packet.CmdResponse:
          return finish(null, p.message);
        default:
          return assertNever(p, "vici packet");
      }
    };
    sock.on("connect", () => sock.write(registerPacket ?? requestPacket));
    sock.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      try {
        while (pending.length >= 4) {
          const len = pending.readUInt32BE(0);
          if (len > VICI_MAX_SEGMENT) throw new TunnelError(`segment of ${len} bytes exceeds ${VICI_MAX_SEGMENT}`);
          if (pending.length < 4 + len) break;
          const seg = pending.subarray(4, 4 + len);
          pending = pending.subarray(4 + len);
          onPacket(decodePacket(seg));
          if (settled) return;
        }
      } catch (err) {
        finish(err as Error);
      }
    });
    sock.on("error", (err) => finish(err));
    sock.on("close", () => finish(new TunnelError("connection closed before the response")));
  });
}

/** A vici `success = no` reply (load-conn, initiate, …) as a ViciError with charon's errmsg; else nothing. */
export function checkSuccess(command: string, reply: ViciReply, detail = ""): void {
  if (reply.response.success === "yes") return;
  const errmsg = typeof reply.response.errmsg === "string" ? reply.response.errmsg : "failed";
  throw new ViciError(command, `${errmsg}${detail ? ` | ${detail}` : ""}`);
}
