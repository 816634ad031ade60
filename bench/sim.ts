// Names of the simulated fleets: bench:scale's and its load generator's, bench:scrape's targets.
export const domainName = (d: number) => `d${String(d).padStart(4, "0")}`;
export const nodeName = (d: number, n: number) => `${domainName(d)}-n${String(n).padStart(2, "0")}`;
export const gatewayName = (d: number) => `gw-${domainName(d)}`;
/** bench:scrape's target i of a domain: 10.99.<i / 250>.<i % 250 + 1>, the same in every domain. */
export const targetIP = (i: number) => `10.99.${Math.floor(i / 250)}.${(i % 250) + 1}`;
export const targetName = (domain: string, i: number) => `${domain}-t${String(i + 1).padStart(4, "0")}`;
