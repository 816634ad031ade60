// ChannelTable: what a channel's end adds to the counters, and closeWhere breaking exactly the matching channels.
import { describe, expect, it } from "vitest";
import { ChannelTable } from "../../../services/gateway-actor/proxy/channels";
import { ChannelError } from "../../../shared/errors";
import { counters } from "../../../shared/metrics";

const info = (id: string, via: string) => ({
  id,
  domain: "shop-b",
  via,
  target: "shop-b-node-1",
  port: 10250,
  term: 3,
});

describe("ChannelTable", () => {
  it("counts a peer's protocol violation apart from a channel that merely broke, and the bytes each way", () => {
    const t = new ChannelTable("edge");
    const errors = (reason: string) => counters.get("raven_channel_errors_total", { side: "edge", reason });
    const before = {
      protocol: errors("protocol"),
      broken: errors("broken"),
      in: counters.get("raven_channel_bytes_total", { side: "edge", direction: "in" }),
    };
    for (const id of ["a", "b", "c"]) t.add(info(id, "shop-b-gw-1"), () => undefined, 0);
    t.closed("a", new ChannelError("PROTOCOL", "a frame from the peer gateway failed authentication"), {
      in: 10,
      out: 0,
    });
    t.closed("b", new ChannelError("CLOSED", "read from the local side: Connection reset by peer"), { in: 5, out: 7 });
    t.closed("c", undefined, { in: 1, out: 1 });
    t.closed("c", undefined, { in: 1, out: 1 }); // a second end of the same channel counts nothing
    expect(errors("protocol") - before.protocol).toBe(1);
    expect(errors("broken") - before.broken).toBe(1);
    expect(counters.get("raven_channel_bytes_total", { side: "edge", direction: "in" }) - before.in).toBe(16);
    expect(t.size).toBe(0);
  });

  it("breaks exactly the channels that match, and keeps them until their end is reported", () => {
    const t = new ChannelTable("cloud");
    const broken: string[] = [];
    for (const [id, via] of [
      ["x", "gw-1"],
      ["y", "gw-2"],
      ["z", "gw-1"],
    ] as const)
      t.add(info(id, via), () => broken.push(id), 0);
    expect(t.closeWhere((c) => c.via === "gw-1")).toBe(2);
    expect(broken).toEqual(["x", "z"]);
    expect(t.size).toBe(3);
    t.closed("x", new ChannelError("CLOSED", "channel closed by the gateway"), { in: 0, out: 0 });
    expect(t.list().map((c) => c.id)).toEqual(["y", "z"]);
  });
});
