// The final dial of a channel, the same on both sides of the proxy: the edge dials targets in its domain, the
// cloud dials nodes of its own domain directly. A dial that fails or does not answer in time is a
// DIAL_FAILED ChannelError naming the address.
import net from "node:net";
import { ChannelError } from "../../../shared/errors";

/** A TCP connection to host:port, or a DIAL_FAILED ChannelError naming the address. */
export function dialTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ChannelError("DIAL_FAILED", `dial ${host}:${port}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (err) => {
      clearTimeout(timer);
      reject(
        new ChannelError("DIAL_FAILED", `dial ${host}:${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, {
          cause: err,
        }),
      );
    });
  });
}
