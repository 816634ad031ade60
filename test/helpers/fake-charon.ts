// A stand-in for charon that speaks the real vici protocol (lib/vpn/vici.ts's codec) on the socket
// named in $STRONGSWAN_CONF, for the strongSwan driver's unit tests: a process the driver starts, watches
// and stops like charon, without IKE, namespaces or root. It keeps connections, shared keys and SAs (an
// initiation of a loaded connection establishes one at once, with the connection's traffic selectors) and
// logs every command. Commands of its own: `fake-state` returns {log, conns, shared, sas}; `fake-set`
// {failLoad, failInit, narrow} makes charon refuse that peer's load-conn / fail its initiation with the
// control-log lines a real NO_PROPOSAL_CHOSEN gives / negotiate that peer's next SA with its first local
// subnet only (as when the other side's configuration is older).
// Run: node --import tsx test/helpers/fake-charon.ts (exits on SIGTERM).
import { readFileSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { encodePacket, Packet, type ViciMessage, type ViciSection } from "../../lib/vpn/vici";
import { readClientPackets } from "./vici-server";

const conf = readFileSync(process.env.STRONGSWAN_CONF ?? "", "utf8");
const socketPath = /socket = unix:\/\/(\S+)/.exec(conf)?.[1];
if (!socketPath) throw new Error("fake-charon: no vici socket in $STRONGSWAN_CONF");

const conns = new Map<string, ViciMessage>();
const shared = new Set<string>();
const sas = new Map<string, { name: string; childId: string; localTs: string[]; remoteTs: string[] }>();
const log: string[] = [];
const fail = { load: "", init: "", narrow: "" };
let nextId = 1;

type Reply = { events: ViciSection[]; response: ViciSection };
const str = (v: ViciMessage[string] | undefined) => (typeof v === "string" ? v : "");

function handle(command: string, req: ViciMessage): Reply | null {
  const ok = (response: ViciSection = { success: "yes" }, events: ViciSection[] = []): Reply => ({ events, response });
  const no = (errmsg: string, events: ViciSection[] = []): Reply => ({ events, response: { success: "no", errmsg } });
  switch (command) {
    case "load-shared":
      log.push(`load-shared ${str(req.id)}`);
      shared.add(str(req.id));
      return ok();
    case "load-conn": {
      const name = Object.keys(req)[0] ?? "";
      log.push(`load-conn ${name}`);
      if (name === fail.load) return no("invalid value for: proposals");
      conns.set(name, req[name] as ViciMessage);
      return ok();
    }
    case "unload-conn":
      log.push(`unload-conn ${str(req.name)}`);
      return conns.delete(str(req.name)) ? ok() : no(`connection '${str(req.name)}' not found`);
    case "unload-shared":
      log.push(`unload-shared ${str(req.id)}`);
      return shared.delete(str(req.id)) ? ok() : no(`no shared key with id '${str(req.id)}'`);
    case "list-sas":
      return ok(
        {},
        [...sas].map(([id, sa]) => ({
          [sa.name]: {
            uniqueid: id,
            state: "ESTABLISHED",
            "child-sas": {
              [`${sa.name}-${sa.childId}`]: {
                name: sa.name,
                uniqueid: sa.childId,
                state: "INSTALLED",
                "bytes-in": "0",
                "bytes-out": "0",
                "local-ts": sa.localTs,
                "remote-ts": sa.remoteTs,
              },
            },
          },
        })),
      );
    case "initiate": {
      const name = str(req.ike);
      log.push(`initiate ${name}`);
      if (!conns.has(name))
        return no(`no config named '${name}'`, [{ group: "CFG", level: "1", msg: `no IKE config named '${name}'` }]);
      if (name === fail.init) {
        return no(`establishing CHILD_SA '${name}' failed`, [
          { group: "ENC", level: "1", msg: "parsed IKE_SA_INIT response 0 [ N(NO_PROP) ]" },
          { group: "IKE", level: "1", msg: "received NO_PROPOSAL_CHOSEN notify error" },
        ]);
      }
      const child = ((conns.get(name)!.children as ViciMessage)[name] ?? {}) as ViciMessage;
      const ts = (v: ViciMessage[string] | undefined) =>
        Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
      const localTs = ts(child.local_ts);
      const narrowed = name === fail.narrow;
      if (narrowed) fail.narrow = "";
      sas.set(String(nextId++), {
        name,
        childId: String(nextId++),
        localTs: narrowed ? localTs.slice(0, 1) : localTs,
        remoteTs: ts(child.remote_ts),
      });
      return ok();
    }
    case "terminate":
      log.push(`terminate ${str(req["ike-id"])}`);
      return sas.delete(str(req["ike-id"])) ? ok() : no("no matching SAs");
    case "fake-state":
      return ok({
        log,
        conns: [...conns.keys()],
        shared: [...shared],
        sas: [...sas].map(([id, sa]) => `${sa.name}#${id}`),
      });
    case "fake-set":
      fail.load = str(req.failLoad);
      fail.init = str(req.failInit);
      fail.narrow = str(req.narrow);
      return ok();
    default:
      return null;
  }
}

function serve(sock: Socket): void {
  let registered = "";
  readClientPackets(sock, (p) => {
    if (p.type === "register") {
      registered = p.name;
      sock.write(encodePacket(Packet.EventConfirm));
      return;
    }
    const reply = handle(p.name, p.message);
    if (!reply) return void sock.write(encodePacket(Packet.CmdUnknown));
    const event = p.name === "list-sas" ? "list-sa" : "control-log";
    if (registered === event) for (const e of reply.events) sock.write(encodePacket(Packet.Event, event, e));
    sock.write(encodePacket(Packet.CmdResponse, undefined, reply.response));
  });
}

rmSync(socketPath, { force: true });
const server = createServer(serve).listen(socketPath);
process.on("SIGTERM", () => {
  server.close();
  rmSync(socketPath, { force: true });
  process.exit(0);
});
