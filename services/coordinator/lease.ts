// The coordinator lease: one KV key, app-level TTL fenced by revision (nats-server 2.9 has no per-key TTL).
// The holder renews every renewMs with a CAS on the revision it last wrote; it may act only until leaseMs
// after *sending* its newest successful renewal. A campaigner takes the key only after seeing the same
// revision for a whole leaseMs since it first saw it — which is after the holder's validity ended — so
// two coordinators never act at once, without synchronised clocks (the rule: shared/fencing.ts).
import type { KV } from "@nats-io/kv";
import { sleep, type Clock } from "../../shared/clock";
import { CasConflictError, describeError } from "../../shared/errors";
import { coordinatorLeaseEnd, leaseRunning, mayTakeLease } from "../../shared/fencing";
import { casPut } from "../../shared/kv";
import type { Logger } from "../../shared/log";

export const LEASE_KEY = "coordinator";

/** `releasing`: the holder is about to stop and release the key (a standby wakes up to take it warm). */
export type LeaseValue = { holder: string; renewedAt: number; since: number; releasing?: boolean };

export type LeaseSettings = Readonly<{ leaseMs: number; renewMs: number; pollMs: number }>;

export class CoordinatorLease {
  private revision = 0;
  private validUntil = -Infinity;
  private since = 0;
  private releasing = false;

  constructor(
    private readonly kv: KV,
    readonly id: string,
    readonly settings: LeaseSettings,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  valid(now = this.clock.now()): boolean {
    return leaseRunning(this.validUntil, now);
  }

  heldSince(): number {
    return this.since;
  }

  /**
   * Resolves once this coordinator holds the lease; rejects only when aborted. `onStale` hears, after every
   * poll, whether the holder looks gone: no holder, or no renewal seen for `staleAfterMs` (the caller wakes
   * up what it needs warm by the time the lease can be taken, leaseMs after the last renewal seen).
   */
  async campaign(
    signal: AbortSignal,
    onStale?: (stale: boolean) => void,
    staleAfterMs = this.settings.leaseMs,
  ): Promise<void> {
    let seenRevision = -1;
    let seenAt = this.clock.now();
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
        onStale?.(!held || now - seenAt >= staleAfterMs || releasingIn(entry));
        if (mayTakeLease(held, seenAt, now, this.settings.leaseMs)) {
          const sentAt = this.clock.now();
          const value: LeaseValue = { holder: this.id, renewedAt: this.clock.wallMs(), since: this.clock.wallMs() };
          this.revision = await casPut(this.kv, LEASE_KEY, value, revision);
          this.validUntil = coordinatorLeaseEnd(sentAt, this.settings.leaseMs);
          this.since = value.since;
          this.log.info({ revision: this.revision, previousRevision: revision }, "coordinator lease acquired");
          return;
        }
      } catch (err) {
        if (!(err instanceof CasConflictError))
          this.log.warn({ err: describeError(err) }, "lease campaign: KV unavailable");
        // Unreadable for long: the holder may be gone too; be warm in case the lease can be taken after all.
        onStale?.(this.clock.now() - seenAt >= staleAfterMs);
      }
      await sleep(this.settings.pollMs, this.clock, signal);
    }
    throw new Error("campaign aborted");
  }

  /** One renewal. Returns false when the lease is lost to another holder. */
  async renew(): Promise<boolean> {
    const sentAt = this.clock.now();
    try {
      const value: LeaseValue = {
        holder: this.id,
        renewedAt: this.clock.wallMs(),
        since: this.since,
        ...(this.releasing ? { releasing: true } : {}),
      };
      this.revision = await casPut(this.kv, LEASE_KEY, value, this.revision);
      this.validUntil = coordinatorLeaseEnd(sentAt, this.settings.leaseMs);
      return true;
    } catch (err) {
      if (err instanceof CasConflictError) {
        // A renewal that timed out here may still have been applied: if the key is ours, adopt its revision.
        try {
          const entry = await this.kv.get(LEASE_KEY);
          if (entry?.operation === "PUT" && entry.json<LeaseValue>().holder === this.id) {
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

  /**
   * Tells a standby that this holder will release the lease soon (this and every later renewal say so), so
   * that it starts following heartbeats now and takes over warm. Returns whether the notice was written.
   */
  async announceRelease(): Promise<boolean> {
    this.releasing = true;
    return this.valid() && (await this.renew());
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

function releasingIn(entry: { operation: string; json<T>(): T } | null): boolean {
  if (entry?.operation !== "PUT") return false;
  try {
    return entry.json<LeaseValue>().releasing === true;
  } catch {
    return false;
  }
}
