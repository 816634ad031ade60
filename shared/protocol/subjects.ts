// Subject builders. Every subject an edge actor publishes or subscribes to carries its domain right after
// the prefix (`raven.d.<domain>.…`), so a domain's leaf credentials can later be locked to `raven.d.<domain>.>`
// with plain NATS permissions. Every token is validated: a name that could break out of its token (dots,
// wildcards, spaces) is an InvalidSubjectTokenError, never a wrong subject.
//
//   raven.d.<domain>.node.<node>.register   node -> coordinator (request/reply)
//   raven.d.<domain>.node.<node>.hb         node heartbeat
//   raven.d.<domain>.gw.<node>.hb           gateway candidate heartbeat
//   raven.d.<domain>.assign                 coordinator -> the domain's gateway candidates (and observers):
//                                           every change of the record, and every resyncMs
//   raven.d.<domain>.gw.<node>.assign       coordinator -> one candidate: the acknowledgement of its heartbeat
//                                           (an assignment naming its seq), or the correction of a confused one
//   raven.ctl.status                        CLI -> active coordinator (cloud side only)
//   raven.d.<domain>.inspect.viewer         a statechart viewer announces itself to the domain's actors (~1/s)
//   raven.d.<domain>.gw.<node>.inspect      a gateway candidate's inspection batches (only while viewed)
//   raven.d.<domain>.node.<node>.inspect    a node actor's inspection batches (only while viewed)
//   raven.d.<domain>.gw.<node>.proxy        a gateway's proxy links and channel totals (every second)
//   raven.ctl.inspect.viewer                a viewer announces itself to the coordinators
//   raven.ctl.coord.<id>.inspect            a coordinator's inspection batches (its statechart, DomainActors)
import { InvalidSubjectTokenError } from "../errors";

export const SUBJECT_PREFIX = "raven";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
// Dot-separated DNS labels, each 1..63 chars, alphanumeric at both ends (one regex: no split on the hot path).
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

/** A domain (node pool) name: a DNS-1123 label. */
export function isDomainName(name: unknown): name is string {
  return typeof name === "string" && DNS_LABEL.test(name);
}

/** A node or Gateway name: a DNS-1123 subdomain, as in Kubernetes. */
export function isObjectName(name: unknown): name is string {
  return typeof name === "string" && name.length <= 253 && DNS_SUBDOMAIN.test(name);
}

export function domainToken(domain: unknown): string {
  if (!isDomainName(domain)) throw new InvalidSubjectTokenError("domain", domain);
  return domain;
}

/** Node names may contain dots; they become `_`, which a valid name never contains, so the map is one-to-one. */
export function nameToken(name: unknown, what = "node name"): string {
  if (!isObjectName(name)) throw new InvalidSubjectTokenError(what, name);
  return name.replaceAll(".", "_");
}

export function tokenToName(token: string): string {
  return token.replaceAll("_", ".");
}

export const subjects = {
  nodeRegister: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.node.${nameToken(node)}.register`,
  nodeHeartbeat: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.node.${nameToken(node)}.hb`,
  gatewayHeartbeat: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.gw.${nameToken(node)}.hb`,
  assignment: (domain: string) => `${SUBJECT_PREFIX}.d.${domainToken(domain)}.assign`,
  gatewayAssignment: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.gw.${nameToken(node)}.assign`,
  status: () => `${SUBJECT_PREFIX}.ctl.status`,
  inspectViewer: (domain: string) => `${SUBJECT_PREFIX}.d.${domainToken(domain)}.inspect.viewer`,
  gatewayInspect: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.gw.${nameToken(node)}.inspect`,
  nodeInspect: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.node.${nameToken(node)}.inspect`,
  gatewayProxy: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.gw.${nameToken(node)}.proxy`,
  allGatewayProxy: () => `${SUBJECT_PREFIX}.d.*.gw.*.proxy`,
  gatewayTunnel: (domain: string, node: string) =>
    `${SUBJECT_PREFIX}.d.${domainToken(domain)}.gw.${nameToken(node)}.tunnel`,
  allGatewayTunnel: () => `${SUBJECT_PREFIX}.d.*.gw.*.tunnel`,
  domainGatewayTunnels: (domain: string) => `${SUBJECT_PREFIX}.d.${domainToken(domain)}.gw.*.tunnel`,
  controlInspectViewer: () => `${SUBJECT_PREFIX}.ctl.inspect.viewer`,
  coordinatorInspect: (id: string) => `${SUBJECT_PREFIX}.ctl.coord.${nameToken(id, "coordinator id")}.inspect`,
  /** Wildcards for the cloud side, which serves every domain. */
  allNodeRegisters: () => `${SUBJECT_PREFIX}.d.*.node.*.register`,
  allNodeHeartbeats: () => `${SUBJECT_PREFIX}.d.*.node.*.hb`,
  allGatewayHeartbeats: () => `${SUBJECT_PREFIX}.d.*.gw.*.hb`,
  allAssignments: () => `${SUBJECT_PREFIX}.d.*.assign`,
  allEdgeInspect: () => `${SUBJECT_PREFIX}.d.*.*.*.inspect`,
  allCoordinatorInspect: () => `${SUBJECT_PREFIX}.ctl.coord.*.inspect`,
  /** Everything one domain's leaf may carry: the permission a later step locks each leaf to. */
  domainScope: (domain: string) => `${SUBJECT_PREFIX}.d.${domainToken(domain)}.>`,
} as const;

/** The domain token of a `raven.d.<domain>.…` subject, or undefined. */
export function domainOfSubject(subject: string): string | undefined {
  const parts = subject.split(".");
  return parts[0] === SUBJECT_PREFIX && parts[1] === "d" && parts[2] ? parts[2] : undefined;
}

/**
 * Checks that a message's body names the same domain and node as the subject it came on
 * (`raven.d.<domain>.<kind>.<node token>.<verb>`), without allocating: it runs for every heartbeat.
 */
export function subjectMatches(subject: string, domain: string, node: string): boolean {
  const domainAt = SUBJECT_PREFIX.length + 3; // "raven.d."
  if (!subject.startsWith(domain, domainAt) || subject.charCodeAt(domainAt + domain.length) !== DOT) return false;
  const kindEnd = subject.indexOf(".", domainAt + domain.length + 1);
  if (kindEnd < 0) return false;
  const nodeAt = kindEnd + 1;
  const nodeEnd = subject.indexOf(".", nodeAt);
  if (nodeEnd - nodeAt !== node.length) return false;
  for (let i = 0; i < node.length; i++) {
    const c = node.charCodeAt(i);
    if (subject.charCodeAt(nodeAt + i) !== (c === DOT ? UNDERSCORE : c)) return false;
  }
  return true;
}
const DOT = 46;
const UNDERSCORE = 95;
