// Proxy mode on loopback (no root needed): cloud gateway -> TLS channel dialed out by the edge gateway ->
// target, through real processes, with every node's InternalIP a distinct 127.x address.
import { afterAll, beforeAll, describe } from "vitest";
import { smallTopology, startTestFleet, type TestFleet } from "../helpers/fleet";
import { proxySuite } from "./proxy-suite";

let t: TestFleet;
const topology = smallTopology(true);

beforeAll(async () => {
  t = await startTestFleet(topology, { proxy: true });
}, 60_000);

afterAll(async () => {
  await t?.stop();
});

describe("proxy mode on loopback", () => {
  proxySuite({ t: () => t, topology, cloudGateway: "gw-c", edgeGateway: "gw-a", edgeNode: "a-node-1" });
});
