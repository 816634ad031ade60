// The open channels of one gateway process: what each carries (domain, the edge gateway it goes through,
// target, term) so that a change of the active gateway or a step-down can close exactly the channels it
// invalidates, and the counters behind `raven_channels_*`. Bytes are counted once, when a channel closes, from
// the relay's totals (or a stream's socket): nothing is added to the per-chunk path.
import type { RavenError } from "../../../shared/errors";
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

/** Bytes a channel carried: `in` toward the target, `out` back toward the client. */
export type ChannelBytes = Readonly<{ in: number; out: number }>;

type Entry = { info: ChannelInfo; close: () => void; openedAt: number };

let nextId = 0;
export const newChannelId = (prefix: string): string => `${prefix}-${(++nextId).toString(36)}`;

export class ChannelTable {
  private readonly open = new Map<string, Entry>();

  constructor(private readonly side: "cloud" | "edge") {}

  get size(): number {
    return this.open.size;
  }

  /** Tracks an open channel; `close` breaks it (closeWhere), after which `closed` must still be called once. */
  add(info: ChannelInfo, close: () => void, now: number): void {
    this.open.set(info.id, { info, close, openedAt: now });
    counters.inc("raven_channels_opened_total", { side: this.side });
  }

  /** Called once per channel when it has ended, with what it carried. */
  closed(id: string, err: Error | undefined, bytes: ChannelBytes): void {
    const e = this.open.get(id);
    if (!e) return;
    this.open.delete(id);
    counters.inc("raven_channels_closed_total", { side: this.side });
    // A peer that broke the sealed-frame protocol (tampering, a gap, truncation) is counted apart from a channel
    // that merely broke (a reset, an abort).
    if (err)
      counters.inc("raven_channel_errors_total", {
        side: this.side,
        reason: (err as RavenError).code === "PROTOCOL" ? "protocol" : "broken",
      });
    counters.inc("raven_channel_bytes_total", { side: this.side, direction: "in" }, bytes.in);
    counters.inc("raven_channel_bytes_total", { side: this.side, direction: "out" }, bytes.out);
  }

  /** Breaks every channel matching `pred`; returns how many. */
  closeWhere(pred: (c: ChannelInfo) => boolean): number {
    let n = 0;
    for (const e of this.open.values()) {
      if (!pred(e.info)) continue;
      e.close();
      n++;
    }
    return n;
  }

  list(): ChannelInfo[] {
    return [...this.open.values()].map((e) => e.info);
  }
}
