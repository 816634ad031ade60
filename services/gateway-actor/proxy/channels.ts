// The open channels of one gateway process: what each carries (domain, the edge gateway it goes through,
// target, term) so that a change of the active gateway or a step-down can close exactly the channels it
// invalidates, and the counters behind `raven_channels_*`. Bytes are counted once, when a channel closes,
// from the sockets' own totals: nothing is added to the per-chunk path.
import type { Socket } from "node:net";
import { counters } from "../../../shared/metrics";

export type ChannelInfo = Readonly<{
  id: string;
  domain: string;
  /** The edge gateway node the channel goes through (this node for a local dial). */
  via: string;
  target: string;
  port: number;
  term: number;
}>;

/** How a channel crosses between gateways: TLS with the pinned fleet CA, or plain TCP for an underlay that is
 * already private or encrypted (tunnel mode's IPsec, a VPN), where TLS would only cost throughput. */
export type ChannelTransport = "tls" | "tcp";

type Entry = { info: ChannelInfo; sockets: Socket[]; openedAt: number };

let nextId = 0;
export const newChannelId = (prefix: string): string => `${prefix}-${(++nextId).toString(36)}`;

export class ChannelTable {
  private readonly open = new Map<string, Entry>();

  constructor(private readonly side: "cloud" | "edge") {}

  get size(): number {
    return this.open.size;
  }

  add(info: ChannelInfo, sockets: Socket[], now: number): void {
    this.open.set(info.id, { info, sockets, openedAt: now });
    counters.inc("raven_channels_opened_total", { side: this.side });
  }

  /** Called once per channel when both of its sockets have closed. */
  closed(id: string, err?: Error): void {
    const e = this.open.get(id);
    if (!e) return;
    this.open.delete(id);
    counters.inc("raven_channels_closed_total", { side: this.side });
    if (err) counters.inc("raven_channel_errors_total", { side: this.side, reason: "broken" });
    const s = e.sockets[0]!;
    counters.inc("raven_channel_bytes_total", { side: this.side, direction: "in" }, s.bytesRead);
    counters.inc("raven_channel_bytes_total", { side: this.side, direction: "out" }, s.bytesWritten);
  }

  /** Destroys every channel matching `pred`; returns how many. */
  closeWhere(pred: (c: ChannelInfo) => boolean): number {
    let n = 0;
    for (const e of this.open.values()) {
      if (!pred(e.info)) continue;
      for (const s of e.sockets) s.destroy();
      n++;
    }
    return n;
  }

  list(): ChannelInfo[] {
    return [...this.open.values()].map((e) => e.info);
  }
}
