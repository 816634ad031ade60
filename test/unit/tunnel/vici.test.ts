// The vici client: the message codec against the protocol's own encoding example, refusal of malformed
// input, and whole calls against a server on a Unix socket that speaks the protocol as charon does (events
// streamed before the response, answers split across reads, unknown commands, early close, silence).
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TunnelError } from "../../../shared/errors";
import {
  checkSuccess,
  decodeMessage,
  encodeMessage,
  encodePacket,
  Packet,
  viciCall,
  ViciClient,
  ViciError,
  type ViciMessage,
} from "../../../lib/vpn";
import { readClientPackets } from "../../helpers/vici-server";

const dir = mkdtempSync(join(tmpdir(), "raven-vici-unit-"));
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("vici message codec", () => {
  it("encodes the protocol README's example byte for byte and decodes it back", () => {
    const msg = { key1: "value1", section1: { "sub-section": { key2: "value2" }, list1: ["item1", "item2"] } };
    const b = (s: string) => [...Buffer.from(s)];
    const expected = Buffer.from([
      3,
      4,
      ...b("key1"),
      0,
      6,
      ...b("value1"),
      1,
      8,
      ...b("section1"),
      1,
      11,
      ...b("sub-section"),
      3,
      4,
      ...b("key2"),
      0,
      6,
      ...b("value2"),
      2,
      4,
      5,
      ...b("list1"),
      5,
      0,
      5,
      ...b("item1"),
      5,
      0,
      5,
      ...b("item2"),
      6,
      2,
    ]);
    expect(encodeMessage(msg)).toEqual(expected);
    expect(decodeMessage(expected)).toEqual(msg);
  });

  it("carries raw bytes (a PSK) and empty lists", () => {
    const key = Buffer.from([0, 255, 10, 32]);
    const bytes = encodeMessage({ data: key, owners: [] });
    expect(bytes).toEqual(
      Buffer.from([3, 4, ...Buffer.from("data"), 0, 4, 0, 255, 10, 32, 4, 6, ...Buffer.from("owners"), 6]),
    );
    expect(decodeMessage(bytes)).toEqual({ data: key.toString("utf8"), owners: [] });
  });

  it("refuses malformed messages with a TunnelError naming the fault", () => {
    const ok = encodeMessage({ s: { k: "v" } });
    expect(() => decodeMessage(ok.subarray(0, ok.length - 1))).toThrow(/ends inside a section/);
    expect(() => decodeMessage(ok.subarray(0, 6))).toThrow(/truncated/);
    expect(() => decodeMessage(Buffer.from([5, 0, 1, 65]))).toThrow(/list item outside a list/);
    expect(() => decodeMessage(Buffer.from([2]))).toThrow(/section end without a section/);
    expect(() => decodeMessage(Buffer.from([9]))).toThrow(TunnelError);
    expect(() => decodeMessage(Buffer.from([4, 1, 65, 3, 1, 66, 0, 0]))).toThrow(/inside a list/);
    expect(() => encodeMessage({ big: "x".repeat(70_000) })).toThrow(/value of big is 70000 bytes/);
    // A key named __proto__ from the wire is an ordinary key, not a prototype change.
    const proto = decodeMessage(Buffer.from([3, 9, ...Buffer.from("__proto__"), 0, 1, 65]));
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype);
    expect(Object.keys(proto)).toEqual(["__proto__"]);
  });
});

/** A vici server: `answer` gets each request (name, message) and writes packets back on the socket. */
function fakeCharon(
  answer: (sock: Socket, name: string, msg: ViciMessage, registered: string | null) => void,
): Promise<string> {
  const path = join(dir, `vici-${servers.length}.sock`);
  const server = createServer((sock) => {
    let registered: string | null = null;
    readClientPackets(sock, (p) => {
      if (p.type === "register") {
        registered = p.name;
        sock.write(encodePacket(p.name === "no-such-event" ? Packet.EventUnknown : Packet.EventConfirm));
      } else {
        answer(sock, p.name, p.message, registered);
      }
    });
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(path, () => resolve(path)));
}

describe("viciCall", () => {
  it("sends a command and returns its response", async () => {
    const path = await fakeCharon((sock, name, msg) =>
      sock.write(encodePacket(Packet.CmdResponse, undefined, { success: "yes", echo: name, got: msg.name as string })),
    );
    const reply = await viciCall(path, "unload-conn", { name: "edge-b" });
    expect(reply.response).toEqual({ success: "yes", echo: "unload-conn", got: "edge-b" });
    expect(reply.events).toEqual([]);
  });

  it("registers a streamed command's event first and returns its events in order, even when the answer arrives a byte at a time", async () => {
    const path = await fakeCharon((sock, _name, _msg, registered) => {
      const out = Buffer.concat([
        encodePacket(Packet.Event, registered!, { "gw-b": { uniqueid: "1", state: "ESTABLISHED" } }),
        encodePacket(Packet.Event, "other-event", { ignored: "yes" }),
        encodePacket(Packet.Event, registered!, { "gw-c": { uniqueid: "2", state: "CONNECTING" } }),
        encodePacket(Packet.CmdResponse, undefined, {}),
      ]);
      for (let i = 0; i < out.length; i++) sock.write(out.subarray(i, i + 1));
    });
    const reply = await viciCall(path, "list-sas", { noblock: "yes" }, { stream: "list-sa" });
    expect(reply.events).toEqual([
      { "gw-b": { uniqueid: "1", state: "ESTABLISHED" } },
      { "gw-c": { uniqueid: "2", state: "CONNECTING" } },
    ]);
  });

  it("fails with the command's name on an unknown command or event, an early close, silence and a socket that is not there", async () => {
    const unknown = await fakeCharon((sock) => sock.write(encodePacket(Packet.CmdUnknown)));
    await expect(viciCall(unknown, "frobnicate")).rejects.toThrow(
      /^vici frobnicate: charon does not know this command/,
    );
    await expect(viciCall(unknown, "list-sas", {}, { stream: "no-such-event" })).rejects.toThrow(
      /vici list-sas: charon has no event "no-such-event"/,
    );
    const closes = await fakeCharon((sock) => sock.end());
    await expect(viciCall(closes, "list-sas")).rejects.toThrow(/vici list-sas: connection closed before the response/);
    const silent = await fakeCharon(() => undefined);
    await expect(viciCall(silent, "initiate", {}, { timeoutMs: 50 })).rejects.toThrow(
      /vici initiate: no answer within 50 ms/,
    );
    await expect(viciCall(join(dir, "absent.sock"), "version")).rejects.toThrow(/vici version: .*ENOENT/);
    const garbage = await fakeCharon((sock) => sock.write(Buffer.from([0, 0, 0, 2, 1, 9])));
    await expect(viciCall(garbage, "version")).rejects.toThrow(/^vici version: unknown element type 9/);
    const huge = await fakeCharon((sock) => sock.write(Buffer.from([0, 0x10, 0, 0, 1])));
    await expect(viciCall(huge, "version")).rejects.toThrow(/vici version: segment of 1048576 bytes exceeds 524288/);
  });

  it("rejects a request it cannot encode, without opening a connection or throwing out of band", async () => {
    let connections = 0;
    const path = await fakeCharon(() => undefined);
    servers[servers.length - 1]!.on("connection", () => connections++);
    const call = viciCall(path, "load-conn", { big: "x".repeat(70_000) });
    await expect(call).rejects.toBeInstanceOf(ViciError);
    await expect(call).rejects.toThrow(/^vici load-conn: value of big is 70000 bytes/);
    expect(connections).toBe(0);
  });

  it("turns success = no into a TunnelError with charon's errmsg", () => {
    expect(() =>
      checkSuccess("load-conn", { response: { success: "no", errmsg: "invalid value for: proposals" }, events: [] }),
    ).toThrow(/vici load-conn: invalid value for: proposals/);
    expect(() =>
      checkSuccess("initiate", { response: { success: "no" }, events: [] }, "[IKE] received NO_PROPOSAL_CHOSEN"),
    ).toThrow(/failed \| \[IKE\] received NO_PROPOSAL_CHOSEN/);
    expect(() => checkSuccess("load-conn", { response: { success: "yes" }, events: [] })).not.toThrow();
  });
});

describe("ViciClient", () => {
  it("runs many commands over one connection, in order, registering a streamed event once", async () => {
    let connections = 0;
    let registrations = 0;
    const order: string[] = [];
    const path = await fakeCharon((sock, name, msg, registered) => {
      order.push(`${name}:${msg.n as string}`);
      if (registered) sock.write(encodePacket(Packet.Event, registered, { n: msg.n as string }));
      sock.write(encodePacket(Packet.CmdResponse, undefined, { success: "yes", n: msg.n as string }));
    });
    servers[servers.length - 1]!.on("connection", (sock: Socket) => {
      connections++;
      sock.on("data", (d: Buffer) => d[4] === Packet.EventRegister && registrations++);
    });
    const client = new ViciClient(path);
    const replies = await Promise.all(
      [1, 2, 3, 4, 5].map((n) =>
        client.call(n % 2 ? "list-sas" : "load-conn", { n: String(n) }, n % 2 ? { stream: "list-sa" } : {}),
      ),
    );
    expect(replies.map((r) => r.response.n)).toEqual(["1", "2", "3", "4", "5"]);
    expect(replies[0]!.events).toEqual([{ n: "1" }]);
    expect(replies[1]!.events).toEqual([]);
    expect(order).toEqual(["list-sas:1", "load-conn:2", "list-sas:3", "load-conn:4", "list-sas:5"]);
    expect([connections, registrations, client.connects]).toEqual([1, 1, 1]);
    client.close();
  });

  it("fails the call in flight and the queued ones when the connection breaks, and reconnects for the next call", async () => {
    let first = true;
    const path = await fakeCharon((sock) => {
      if (first) {
        first = false;
        sock.destroy();
      } else sock.write(encodePacket(Packet.CmdResponse, undefined, { success: "yes" }));
    });
    const client = new ViciClient(path);
    const [a, b] = [client.call("list-sas"), client.call("load-conn")];
    await expect(a).rejects.toThrow(/^vici list-sas: connection closed before the response/);
    await expect(b).rejects.toThrow(/^vici load-conn: connection closed before the response/);
    expect((await client.call("list-sas")).response).toEqual({ success: "yes" });
    expect(client.connects).toBe(2);
    client.close();
    await expect(client.call("list-sas", {}, { timeoutMs: 100 })).resolves.toBeDefined(); // closed: a new connection
  });
});
