// The server side of vici's framing for test stand-ins of charon (test/helpers/fake-charon.ts,
// test/unit/tunnel/vici.test.ts): reads a client's length-prefixed packets off a socket, however the bytes
// are split, and hands over each event registration and command request.
import type { Socket } from "node:net";
import { decodeMessage, Packet, type ViciMessage } from "../../lib/vpn/vici";

export type ClientPacket = { type: "register"; name: string } | { type: "request"; name: string; message: ViciMessage };

export function readClientPackets(sock: Socket, onPacket: (p: ClientPacket) => void): void {
  let buf = Buffer.alloc(0);
  sock.on("error", () => sock.destroy());
  sock.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const seg = buf.subarray(4, 4 + buf.readUInt32BE(0));
      buf = buf.subarray(4 + seg.length);
      const name = seg.toString("ascii", 2, 2 + seg[1]!);
      if (seg[0] === Packet.EventRegister) onPacket({ type: "register", name });
      else if (seg[0] === Packet.CmdRequest)
        onPacket({ type: "request", name, message: decodeMessage(seg.subarray(2 + seg[1]!)) });
    }
  });
}
