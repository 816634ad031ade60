// The status reply: what `raven status` shows, built from the coordinator's live view (records, health,
// node liveness). Bounded: domains are added until the encoded-size budget would be exceeded, then the reply
// says it is truncated (ask for one domain with --domain).
import type { Unit } from "../../shared/domains";
import type { Gateway } from "../../shared/gateway";
import type { DomainStatus, StatusReply } from "../../shared/protocol";
import type { HealthTracker } from "./health";
import type { TermChangeWindow } from "./term-changes";

export type StatusInput = Readonly<{
  coordinator: string;
  activeSince: number;
  units: Iterable<Unit>;
  record: (key: string) => Gateway | null;
  nodeIP: (name: string) => string;
  tracker: HealthTracker;
  /** Term raises per unit key, for termChangesLastMinute. */
  termChanges: Pick<TermChangeWindow, "count">;
  now: number;
  deadAfterMs: number;
  domainFilter?: string;
}>;

/** Stays well below MAX_MESSAGE_BYTES for a reply of rows estimated at ~120 bytes each. */
const BUDGET_BYTES = 200_000;
const MAX_PROBLEM_CHARS = 512;

export function buildStatus(input: StatusInput): StatusReply {
  const { now, tracker } = input;
  const age = (t: number | undefined) => (t === undefined ? null : Math.max(0, Math.round(now - t)));
  const domains: DomainStatus[] = [];
  let budget = BUDGET_BYTES;
  let truncated = false;
  const units = [...input.units].sort((a, b) => ((a.domain ?? "") + a.key).localeCompare((b.domain ?? "") + b.key));
  for (const unit of units) {
    if (!unit.domain || (input.domainFilter && unit.domain !== input.domainFilter)) continue;
    const record = input.record(unit.key);
    const spec = record?.spec;
    const ds: DomainStatus = {
      domain: unit.domain,
      gateway: unit.name,
      solo: unit.solo,
      term: record?.status.term ?? 0,
      termChangesLastMinute: input.termChanges.count(unit.key, now),
      replicas: { proxy: spec?.proxyConfig.Replicas ?? 0, tunnel: spec?.tunnelConfig.Replicas ?? 0 },
      active: (record?.status.activeEndpoints ?? []).map((e) => ({ nodeName: e.nodeName, type: e.type })),
      candidates: unit.candidates.map((c) => {
        const h = tracker.candidates.get(c);
        return {
          node: c,
          types: [...new Set((spec?.endpoints ?? []).filter((e) => e.nodeName === c).map((e) => e.type))],
          healthy: (h?.healthy ?? false) && h?.gateway === unit.name,
          draining: h?.draining ?? false,
          datapathOk: h?.datapathOk ?? false,
          actingActive: h && now - h.lastSeenAt < input.deadAfterMs ? h.acting : [],
          lastHeartbeatAgeMs: age(h?.lastSeenAt),
        };
      }),
      nodes: unit.nodes.map((n) => ({
        node: n,
        internalIP: input.nodeIP(n),
        ready: tracker.nodeReady(n, now),
        lastHeartbeatAgeMs: age(tracker.nodes.get(n)?.lastSeenAt),
      })),
    };
    const problem = unit.problem ?? record?.status.problem;
    if (problem)
      ds.problem = problem.length > MAX_PROBLEM_CHARS ? `${problem.slice(0, MAX_PROBLEM_CHARS - 3)}...` : problem;
    const tunnelProblem = record?.status.tunnelProblem;
    if (tunnelProblem)
      ds.tunnelProblem =
        tunnelProblem.length > MAX_PROBLEM_CHARS
          ? `${tunnelProblem.slice(0, MAX_PROBLEM_CHARS - 3)}...`
          : tunnelProblem;
    budget -= 200 + 120 * (ds.nodes.length + ds.candidates.length);
    if (budget < 0) {
      truncated = true;
      break;
    }
    domains.push(ds);
  }
  return { coordinator: input.coordinator, activeSince: input.activeSince, domains, truncated };
}
