// StrongSwanDriver.apply over vici, against test/helpers/fake-charon.ts (a process that speaks vici as charon
// does): what it loads, unloads, terminates and initiates for each change of the desired peers, and where a
// peer's failure lands. The real charon runs in test/integration/tunnel-netns.test.ts.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ensurePskFile, StrongSwanDriver, viciCall, type CharonLauncher, type VpnPeer } from "../../../lib/vpn";
import { FakeNet } from "../../../lib/kernel";

const FAKE_CHARON = fileURLToPath(new URL("../../helpers/fake-charon.ts", import.meta.url));
const launch: CharonLauncher = (_argv, env, outFd) =>
  spawn(process.execPath, ["--import", "tsx", FAKE_CHARON], { stdio: ["ignore", outFd, outFd], env });

const dir = mkdtempSync(join(tmpdir(), "raven-strongswan-unit-"));
const drivers: StrongSwanDriver[] = [];
afterAll(async () => {
  for (const d of drivers) await d.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const peer = (name: string, remoteAddr: string, remoteSubnets = ["10.245.0.0/24"]): VpnPeer => ({
  name,
  localAddr: "198.18.0.1",
  remoteAddr,
  localSubnets: ["10.244.0.0/24"],
  remoteSubnets,
});
const [B, C] = [peer("b", "198.18.0.2"), peer("c", "198.18.0.3")];

function driver(name: string): {
  d: StrongSwanDriver;
  psk: string;
  fake(command: string, req?: Record<string, string>): Promise<FakeState>;
} {
  const stateDir = join(dir, name);
  const psk = ensurePskFile(join(dir, `${name}.psk`));
  const d = new StrongSwanDriver({
    stateDir,
    pskFile: psk,
    esp: "kernel",
    charonPath: "/bin/true",
    viciPluginPath: "/bin/true",
    launch,
    net: new FakeNet(),
  });
  drivers.push(d);
  const fake = async (command: string, req: Record<string, string> = {}) =>
    (await viciCall(join(stateDir, "charon.vici"), command, req)).response as unknown as FakeState;
  return { d, psk, fake };
}
type FakeState = { log: string[]; conns: string[]; shared: string[]; sas: string[] };

const states = (s: { peers: readonly { name: string; state: string }[] }) =>
  Object.fromEntries(s.peers.map((p) => [p.name, p.state]));

describe("StrongSwanDriver over vici", () => {
  it("loads each peer's key then connection and initiates it once; the same desired state again sends nothing", async () => {
    const { d, fake } = driver("same");
    expect(states(await d.apply({ peers: [B, C] }))).toEqual({ b: "up", c: "up" });
    const first = (await fake("fake-state")).log;
    expect(first.slice(0, 4)).toEqual(["load-shared ike-b", "load-conn b", "load-shared ike-c", "load-conn c"]);
    expect(first.slice(4).sort()).toEqual(["initiate b", "initiate c"]);
    expect(states(await d.apply({ peers: [B, C] }))).toEqual({ b: "up", c: "up" });
    expect((await fake("fake-state")).log).toEqual(first);
    expect([d.reloads, d.initiations]).toEqual([1, 2]);
  });

  it("re-keys only a changed peer: its old SA terminated by id, reloaded, initiated; the other keeps its SA", async () => {
    const { d, fake } = driver("changed");
    await d.apply({ peers: [B, C] });
    const before = await fake("fake-state");
    const oldC = before.sas.find((s) => s.startsWith("c#"))!;
    expect(states(await d.apply({ peers: [B, peer("c", "198.18.0.3", ["10.246.0.0/24"])] }))).toEqual({
      b: "up",
      c: "up",
    });
    const after = await fake("fake-state");
    expect(after.log.slice(before.log.length)).toEqual([
      "load-shared ike-c",
      "load-conn c",
      `terminate ${oldC.split("#")[1]}`,
      "initiate c",
    ]);
    expect(after.sas).toContain(before.sas.find((s) => s.startsWith("b#")));
    expect(after.sas).not.toContain(oldC);
  });

  it("ends an SA negotiated narrower than the connection and initiates it again; until then it is not up", async () => {
    const { d, fake } = driver("narrow");
    const wide = { ...B, localSubnets: ["10.244.0.0/24", "10.244.1.0/24"] };
    await d.apply({ peers: [] }); // charon running, nothing loaded
    await fake("fake-set", { narrow: "b" }); // the other side still had an older view of our subnets
    const first = await d.apply({ peers: [wide] });
    expect(first.peers[0]).toMatchObject({
      name: "b",
      state: "down",
      lastError: "security association does not cover local 10.244.1.0/24",
    });
    // The caller renegotiates (the same desired state, applied again): the narrow SA is ended by id and the
    // peer initiated anew, this time with both subnets.
    const before = await fake("fake-state");
    const second = await d.apply({ peers: [wide] });
    const after = await fake("fake-state");
    expect(after.log.slice(before.log.length)).toEqual([`terminate ${before.sas[0]!.split("#")[1]}`, "initiate b"]);
    expect(states(second)).toEqual({ b: "up" });
    expect(d.narrowed).toBe(1);
  });

  it("leaves a narrow SA to its initiator when it is the responder", async () => {
    const { d, fake } = driver("narrow-responder");
    const r: VpnPeer = { ...B, localSubnets: ["10.244.0.0/24", "10.244.1.0/24"], initiate: false };
    await d.apply({ peers: [r] }); // loaded, nothing initiated: the peer starts
    await fake("fake-set", { narrow: "b" });
    await viciCall(join(dir, "narrow-responder", "charon.vici"), "initiate", { ike: "b", child: "b" }); // the peer's SA, narrowed
    const before = await fake("fake-state");
    expect(states(await d.apply({ peers: [r] }))).toEqual({ b: "up" });
    expect((await fake("fake-state")).log.slice(before.log.length).filter((l) => !l.startsWith("list"))).toEqual([]);
    expect(d.narrowed).toBe(0);
  });

  it("removes a gone peer (SA, connection, key), even when charon no longer has its connection", async () => {
    const { d, fake } = driver("gone");
    await d.apply({ peers: [B, C] });
    await viciCall(join(dir, "gone", "charon.vici"), "unload-conn", { name: "c" }); // gone behind the driver's back
    const before = await fake("fake-state");
    expect(states(await d.apply({ peers: [B] }))).toEqual({ b: "up" });
    const after = await fake("fake-state");
    expect(after.log.slice(before.log.length)).toEqual([
      "unload-conn c",
      "unload-shared ike-c",
      `terminate ${before.sas.find((s) => s.startsWith("c#"))!.split("#")[1]}`,
    ]);
    expect([after.conns, after.shared, after.sas.map((s) => s.split("#")[0])]).toEqual([["b"], ["ike-b"], ["b"]]);
  });

  it("reports a peer charon refuses as down with charon's reason, retries it on the next apply, and brings the others up", async () => {
    const { d, fake } = driver("refused");
    await d.apply({ peers: [] }); // charon running, nothing loaded
    await fake("fake-set", { failLoad: "c" });
    const s = await d.apply({ peers: [B, C] });
    expect(states(s)).toEqual({ b: "up", c: "down" });
    expect(s.peers.find((p) => p.name === "c")!.lastError).toBe("not loaded: load-conn: invalid value for: proposals");
    expect((await fake("fake-state")).log).not.toContain("initiate c");
    await d.apply({ peers: [B, C] });
    expect((await fake("fake-state")).log.filter((l) => l === "load-conn c")).toHaveLength(2);
    await fake("fake-set", { failLoad: "" });
    expect(states(await d.apply({ peers: [B, C] }))).toEqual({ b: "up", c: "up" });
  });

  it("reports a failed initiation as down with charon's error and its last control-log lines", async () => {
    const { d, fake } = driver("initfail");
    await d.apply({ peers: [] });
    await fake("fake-set", { failInit: "b" });
    const s = await d.apply({ peers: [B] });
    expect(s.peers[0]).toMatchObject({
      name: "b",
      state: "down",
      lastError:
        "initiate failed: establishing CHILD_SA 'b' failed | [ENC] parsed IKE_SA_INIT response 0 [ N(NO_PROP) ] | [IKE] received NO_PROPOSAL_CHOSEN notify error",
    });
  });

  it("reloads every key and connection on a new PSK without re-keying any SA", async () => {
    const { d, psk, fake } = driver("rotate");
    await d.apply({ peers: [B, C] });
    const before = await fake("fake-state");
    writeFileSync(psk, `${"ab".repeat(32)}\n`, { mode: 0o600 });
    expect(states(await d.apply({ peers: [B, C] }))).toEqual({ b: "up", c: "up" });
    const after = await fake("fake-state");
    expect(after.log.slice(before.log.length)).toEqual([
      "load-shared ike-b",
      "load-conn b",
      "load-shared ike-c",
      "load-conn c",
    ]);
    expect(after.sas).toEqual(before.sas);
  });
});
