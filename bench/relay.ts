// A bare relay, as a process of its own: bench:proxy chains two of them (TCP in, TLS between them, TCP out) to
// measure the floor of a relay with the same two hops as the Raven path and none of Raven's routing, fencing or
// channel handshake. Each listens on two ports on 127.0.0.1 (the sink's and the echo's) and joins every
// connection to the matching upstream port: by default with the JavaScript splice (what Node's event loop,
// streams and TLS cost), with --native by handing both sockets to the gateways' native relay. Prints one JSON
// line {"ready":true,"sinkPort","echoPort"} once listening; exits when stdin closes (the benchmark that started
// it is gone).
import net from "node:net";
import tls from "node:tls";
import { parseFlags, requireFlag } from "../shared/args";
import { ConfigError } from "../shared/errors";
import { loadPki } from "../shared/pki";
import { runMain } from "../shared/process";
import { PROXY_SERVERNAME } from "../services/gateway-actor/proxy/edge";
import { splice } from "../services/gateway-actor/proxy/splice";
import { NativeRelay, channelKeys, stopReading } from "../services/gateway-actor/proxy/native-relay";
import { integerFlag } from "./flags";

type Side = "tcp" | "tls";

function side(v: string | undefined, flag: string): Side {
  if (v === "tcp" || v === "tls") return v;
  throw new ConfigError(flag, `must be tcp or tls, got ${JSON.stringify(v)}`);
}

runMain(async () => {
  const parsed = parseFlags(
    process.argv.slice(2),
    "node --import tsx bench/relay.ts --upstream-sink N --upstream-echo N [options]",
    "A bare Node relay (two ports) for bench:proxy's floor path; exits when stdin closes.",
    {
      "upstream-sink": { type: "string", help: "upstream port for the sink (on 127.0.0.1)" },
      "upstream-echo": { type: "string", help: "upstream port for the echo (on 127.0.0.1)" },
      in: { type: "string", default: "tcp", help: "what clients speak to this relay: tcp or tls" },
      out: { type: "string", default: "tcp", help: "what this relay speaks upstream: tcp or tls" },
      pki: { type: "string", help: "fleet PKI directory (shared/pki.ts) for the TLS side: proxy key and cert, CA" },
      native: {
        type: "boolean",
        default: false,
        help: "hand each connection to the gateways' native relay (sealed frames with TLS-exported keys on the TLS side)",
      },
    },
  );
  if (!parsed) return;
  const { flags } = parsed;
  const inSide = side(flags.in, "--in");
  const outSide = side(flags.out, "--out");
  const pki = inSide === "tls" || outSide === "tls" ? loadPki(requireFlag(flags.pki, "pki")) : null;
  const secureContext = pki ? tls.createSecureContext({ ca: pki.caCert }) : null;
  const upstream = {
    sink: integerFlag(flags["upstream-sink"] ?? "", "--upstream-sink", 1),
    echo: integerFlag(flags["upstream-echo"] ?? "", "--upstream-echo", 1),
  };

  const serve = (upstreamPort: number) => {
    const onClient = (client: net.Socket) => {
      client.setNoDelay(true);
      const up =
        outSide === "tls"
          ? tls.connect({
              host: "127.0.0.1",
              port: upstreamPort,
              secureContext: secureContext!,
              servername: PROXY_SERVERNAME,
              allowHalfOpen: true,
            } as tls.ConnectionOptions)
          : net.connect({ host: "127.0.0.1", port: upstreamPort, allowHalfOpen: true });
      up.setNoDelay(true);
      if (flags.native)
        return void up.once(outSide === "tls" ? "secureConnect" : "connect", () =>
          inSide === "tls" ? nativeIn(client, up) : nativeOut(client, up),
        );
      splice(client, up, () => undefined);
    };
    const server =
      inSide === "tls"
        ? tls.createServer({ key: pki!.proxy.key, cert: pki!.proxy.cert, allowHalfOpen: true }, onClient)
        : net.createServer({ allowHalfOpen: true }, onClient);
    return new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port));
    });
  };
  // Native handover, as the gateways do it: the TLS server says "W" after its handshake (after its session
  // tickets), the client answers "G" and stops reading TLS (gated); the server hands over after reading "G".
  const relay = flags.native ? NativeRelay.get() : null;
  // A relay with TLS in (the inner one) hands over on "G"; any other hands over now, or on "W" with TLS out.
  const nativeOut = (client: net.Socket, up: net.Socket) => {
    if (outSide === "tcp") return void relay!.join(client, up, {}, () => undefined);
    up.once("data", () => {
      up.write("G");
      stopReading(up);
      void relay!.join(
        client,
        up,
        { keys: channelKeys(up as tls.TLSSocket, "bench", "client"), gated: true },
        () => undefined,
      );
    });
  };
  const nativeIn = (client: net.Socket, up: net.Socket) => {
    client.write("W");
    client.once(
      "data",
      () =>
        void relay!.join(
          up,
          client,
          { keys: channelKeys(client as tls.TLSSocket, "bench", "server") },
          () => undefined,
        ),
    );
  };
  const [sinkPort, echoPort] = [await serve(upstream.sink), await serve(upstream.echo)];
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
  process.stdout.write(JSON.stringify({ ready: true, sinkPort, echoPort }) + "\n");
});
