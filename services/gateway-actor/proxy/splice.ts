// Joins two sockets into one channel: bytes flow both ways through `pipe`, so backpressure is end to end (a
// slow reader pauses the far writer; memory per channel is bounded by the two sockets' high-water marks).
// Half-close is carried across: when one side ends its writing, the other side's write end is closed and
// reading goes on (both sockets must be allowHalfOpen). An error or reset on either side destroys both, and
// `onClose` runs exactly once, with the error if there was one.
import type { Socket } from "node:net";

export function splice(a: Socket, b: Socket, onClose: (err?: Error) => void): void {
  let closed = 0;
  let failure: Error | undefined;
  const fail = (err: Error) => {
    failure ??= err;
    a.destroy();
    b.destroy();
  };
  const onSocketClose = () => {
    if (++closed < 2) {
      // One side is fully closed; if the other still waits on bytes that can never come, end it too.
      if (a.destroyed && !b.destroyed && b.writableEnded === false) b.end();
      if (b.destroyed && !a.destroyed && a.writableEnded === false) a.end();
      return;
    }
    onClose(failure);
  };
  a.on("error", fail);
  b.on("error", fail);
  a.once("close", onSocketClose);
  b.once("close", onSocketClose);
  a.pipe(b);
  b.pipe(a);
}
