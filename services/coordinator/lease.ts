// The coordinator lease: one KV key, app-level TTL fenced by revision (nats-server 2.9 has no per-key TTL).
// The holder renews every renewMs with a CAS on the revision it last wrote; it may act only until leaseMs
// after *sending* its newest successful renewal. A campaigner takes the key only after seeing the same
// revision for a whole leaseMs since it first saw it — which is after the holder's validity ended — so
// two coordinators never act at once, without synchronised clocks.
import type { KV } from "@nats-io/kv";
import type { Clock } from "../../shared/clock";
import { CasConflictError, describeError } from "../../shared/errors";
import { casPut } from "../../shared/kv";
import type { Logger } from "../../shared/log";

export const LEASE_KEY = "coordinator";

export type LeaseValue = { holder: string; renewedAt: number; since: number };

export type LeaseSettings = Readonly<{ leaseMs: number; renewMs: number; pollMs: number }>;

const sleep = (ms: number, clock: Clock, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const onAbort = () => {
      clock.clearTimeout(t);
      resolve();
    };
    const t = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

export class CoordinatorLease {
  private revision = 0;
  private validUntil = -Infinity;
  private since = 0;

  constructor(
    private readonly kv: KV,
    readonly id: string,
    private readonly settings: LeaseSettings,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  valid(now = this.clock.now()): boolean {
    return now < this.validUntil;
  }

  heldSince(): number {
    return this.since;
  }

  /** Resolves once this coordinator holds the lease; rejects only when aborted. */
  async campaign(signal: AbortSignal): Promise<void> {
    let seenRevision = -1;
    let seenAt = 0;
    while (!signal.aborted) {
      try {
        const entry = await this.kv.get(LEASE_KEY);
        const now = this.clock.now();
        const held = entry !== null && entry.operation === "PUT";
        const revision = entry?.revision ?? 0;
        if (revision !== seenRevision) {
          seenRevision = revision;
          seenAt = now;
        }
        if (!held || now - seenAt >= this.settings.leaseMs) {
          const sentAt = this.clock.now();
          const value: LeaseValue = { holder: this.id, renewedAt: this.clock.wallMs(), since: this.clock.wallMs() };
          this.revision = await casPut(this.kv, LEASE_KEY, value, revision);
          this.validUntil = sentAt + this.settings.leaseMs;
          this.since = value.since;
          this.log.info({ revision: this.revision, previousRevision: revision }, "coordinator lease acquired");
          return;
        }
      } catch (err) {
        if (!(err instanceof CasConflictError)) this.log.warn({ err: describeError(err) }, "lease campaign: KV unavailable");
      }
      await sleep(this.settings.pollMs, this.clock, signal);
    }
    throw new Error("campaign aborted");
  }

  /** One renewal. Returns false when the lease is lost to another holder. */
  async renew(): Promise<boolean> {
    const sentAt = this.clock.now();
    try {
      const value: LeaseValue = { holder: this.id, renewedAt: this.clock.wallMs(), since: this.since };
      this.revision = await casPut(this.kv, LEASE_KEY, value, this.revision);
      this.validUntil = sentAt + this.settings.leaseMs;
      return true;
    } catch (err) {
      if (err instanceof CasConflictError) {
        // A renewal that timed out here may still have been applied: if the key is ours, adopt its revision.
        try {
          const entry = await this.kv.get(LEASE_KEY);
          if (entry?.operation === "PUT" && (entry.json<LeaseValue>().holder === this.id)) {
            this.revision = entry.revision;
            return this.valid();
          }
        } catch {
          // unreadable: treat as lost
        }
        this.validUntil = -Infinity;
        return false;
      }
      this.log.warn({ err: describeError(err) }, "lease renewal failed; still valid until expiry");
      return this.valid();
    }
  }

  /** Gives the lease up at once (graceful stop) so the standby need not wait for it to expire. */
  async release(): Promise<void> {
    if (!this.valid()) return;
    this.validUntil = -Infinity;
    try {
      await this.kv.delete(LEASE_KEY, { previousSeq: this.revision });
    } catch (err) {
      this.log.warn({ err: describeError(err) }, "lease release failed; the standby will wait for expiry");
    }
  }
}
