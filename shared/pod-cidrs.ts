// The inventory check of tunnel mode: which domains' pod CIDRs overlap another domain's. Tunnel mode cannot
// route an address that two domains both claim (that would need NAT, cf. Submariner's Globalnet), so the
// coordinator writes the reason into each affected domain's Gateway record (`status.tunnelProblem`) and the
// gateways and nodes leave that domain out. Pure; O(n log n) in the number of CIDRs, since the coordinator
// runs it over the whole inventory whenever membership changes.
//
// CIDRs either nest or are disjoint, so after sorting by (start, widest first) every CIDR that overlaps the
// current one and came before it encloses it: a stack of open enclosing CIDRs finds them all.
import { parseCidr } from "./cidr";

export type DomainPodCidrs = Readonly<{ domain: string; podCidrs: readonly string[] }>;

/** At most this many sentences per domain; the rest are counted. */
const MAX_SENTENCES = 3;

/**
 * Domain -> why tunnel mode refuses it, for each domain with a pod CIDR that overlaps another domain's
 * (`pod CIDR 10.244.1.0/24 of domain factory overlaps 10.244.0.0/16 of domain shop`) or that is malformed.
 * Overlap inside one domain is the CNI's business and not reported. Domains with no problem are absent.
 */
export function podCidrProblems(domains: readonly DomainPodCidrs[]): Map<string, string> {
  const sentences = new Map<string, string[]>();
  const note = (domain: string, text: string) => {
    const list = sentences.get(domain) ?? [];
    if (!list.includes(text)) list.push(text);
    sentences.set(domain, list);
  };
  type Item = { domain: string; text: string; start: number; end: number };
  const items: Item[] = [];
  for (const d of domains) {
    for (const c of d.podCidrs) {
      try {
        items.push({ domain: d.domain, ...parseCidr(c) });
      } catch (err) {
        note(d.domain, `domain ${d.domain}: ${(err as Error).message}`);
      }
    }
  }
  items.sort((a, b) => a.start - b.start || b.end - a.end || (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
  const open: Item[] = [];
  for (const x of items) {
    while (open.length > 0 && open[open.length - 1]!.end < x.start) open.pop();
    for (let i = open.length - 1; i >= 0; i--) {
      const y = open[i]!;
      if (y.domain === x.domain) continue;
      const text = `pod CIDR ${x.text} of domain ${x.domain} overlaps ${y.text} of domain ${y.domain}`;
      note(x.domain, text);
      note(y.domain, text);
    }
    open.push(x);
  }
  const out = new Map<string, string>();
  for (const [domain, list] of sentences) {
    const more = list.length - MAX_SENTENCES;
    out.set(domain, list.slice(0, MAX_SENTENCES).join("; ") + (more > 0 ? `; and ${more} more` : ""));
  }
  return out;
}
