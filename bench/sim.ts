// Names of the simulated fleet shared by bench:scale and its load generator.
export const domainName = (d: number) => `d${String(d).padStart(4, "0")}`;
export const nodeName = (d: number, n: number) => `${domainName(d)}-n${String(n).padStart(2, "0")}`;
export const gatewayName = (d: number) => `gw-${domainName(d)}`;
