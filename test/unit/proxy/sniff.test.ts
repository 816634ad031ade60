// Name-routed listeners read the target from the first bytes: SNI of a real TLS ClientHello (made by Node's
// own TLS client), or the Host header of a plain request; incomplete input asks for more, junk is refused.
import net from "node:net";
import tls from "node:tls";
import { describe, expect, it } from "vitest";
import { hostOnly, sniff } from "../../../services/gateway-actor/proxy/sniff";
import { parseTarget } from "../../../services/gateway-actor/proxy/front";

/** The first bytes a real TLS client sends for `servername`. */
async function clientHello(servername?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => {
      s.once("data", (d) => {
        resolve(d);
        s.destroy();
        server.close();
      });
    });
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      const c = tls.connect({
        port,
        host: "127.0.0.1",
        ...(servername ? { servername } : {}),
        rejectUnauthorized: false,
      });
      c.on("error", () => {});
    });
    server.on("error", reject);
  });
}

describe("sniff", () => {
  it("reads SNI from a real ClientHello, and asks for more while it is incomplete", async () => {
    const hello = await clientHello("factory-a-node-1");
    expect(sniff(hello)).toEqual({ kind: "tls", serverName: "factory-a-node-1" });
    expect(sniff(hello.subarray(0, 3))).toEqual({ kind: "more" });
    expect(sniff(hello.subarray(0, hello.length - 1))).toEqual({ kind: "more" });
  });

  it("reports a ClientHello without SNI (an IP-addressed TLS client sends none)", async () => {
    const hello = await clientHello();
    expect(sniff(hello)).toEqual({ kind: "tls", serverName: null });
  });

  it("reads the Host header of a plain request, without the port", () => {
    const req = Buffer.from("GET /metrics HTTP/1.1\r\nUser-Agent: x\r\nhost: shop-b-node-2:9100\r\n\r\n");
    expect(sniff(req)).toEqual({ kind: "http", host: "shop-b-node-2" });
    expect(sniff(req.subarray(0, 20))).toEqual({ kind: "more" });
    expect(sniff(Buffer.from("GET / HTTP/1.1\r\n\r\n"))).toEqual({ kind: "http", host: null });
  });

  it("refuses junk with a reason", () => {
    expect(sniff(Buffer.from("SSH-2.0-OpenSSH_9.2\r\n\r\n"))).toMatchObject({ kind: "invalid" });
    const notHello = Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0]);
    expect(sniff(notHello)).toEqual({ kind: "invalid", reason: "first TLS handshake message is not a ClientHello" });
    expect(sniff(Buffer.alloc(17_000, 0x41))).toMatchObject({ kind: "invalid" });
  });

  it("splits host and port, IPv6 literals included", () => {
    expect(hostOnly("node-1:10250")).toBe("node-1");
    expect(hostOnly("[::1]:10250")).toBe("[::1]");
    expect(parseTarget("node-1:10250")).toEqual({ node: "node-1", port: 10250 });
    expect(() => parseTarget("node-1")).toThrow(/not node:port/);
    expect(() => parseTarget("node-1:99999")).toThrow(/not node:port/);
  });
});
