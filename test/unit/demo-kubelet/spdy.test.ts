// The SPDY/3 header dictionary must be byte-exact (zlib checks it by Adler-32, and kubectl's spdystream
// compresses against it): pinned by length and SHA-256. kubectl exec over SPDY itself runs in
// test/integration/proxy-netns.test.ts.
import { describe, expect, it } from "vitest";
import { SPDY_DICTIONARY, pickSpdyProtocol, sha256 } from "../../../lib/demo-kubelet/spdy";

describe("SPDY/3 for kubectl exec", () => {
  it("builds the protocol's header dictionary byte for byte", () => {
    expect(SPDY_DICTIONARY.length).toBe(1423);
    expect(sha256(SPDY_DICTIONARY)).toBe("51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02");
    expect(SPDY_DICTIONARY.subarray(-6).toString()).toBe("enq=0.");
  });

  it("picks v5 or v4 from the offered stream protocols, repeated or joined", () => {
    expect(pickSpdyProtocol(["v5.channel.k8s.io", "v4.channel.k8s.io"])).toBe("v5.channel.k8s.io");
    expect(pickSpdyProtocol("v4.channel.k8s.io, v3.channel.k8s.io")).toBe("v4.channel.k8s.io");
    expect(pickSpdyProtocol("v3.channel.k8s.io")).toBeUndefined();
    expect(pickSpdyProtocol(undefined)).toBeUndefined();
  });
});
