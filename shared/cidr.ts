// IPv4 CIDR arithmetic (pod CIDRs, traffic selectors): the coordinator's overlap check and tunnel mode. Pure.
import { TunnelError } from "./errors";
import { isIPv4 } from "./topology";

export type Cidr = Readonly<{ text: string; start: number; end: number; prefixLen: number }>;

export function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** Parses `a.b.c.d/len`; host bits must be zero (a route or selector for 10.0.0.5/24 is a typo, not a network). */
export function parseCidr(text: unknown): Cidr {
  if (typeof text !== "string") throw new TunnelError(`CIDR ${JSON.stringify(text)} is not a string`);
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m || !isIPv4(m[1]) || Number(m[2]) > 32)
    throw new TunnelError(`CIDR ${JSON.stringify(text)} is not an IPv4 a.b.c.d/len`);
  const prefixLen = Number(m[2]);
  const size = 2 ** (32 - prefixLen);
  const start = ipToInt(m[1]!);
  if (start % size !== 0)
    throw new TunnelError(
      `CIDR ${text} has host bits set (the network is ${intToIp(Math.floor(start / size) * size)}/${prefixLen})`,
    );
  return { text, start, end: start + size - 1, prefixLen };
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.start <= b.end && b.start <= a.end;
}

export function cidrContains(c: Cidr, ip: string): boolean {
  const n = ipToInt(ip);
  return n >= c.start && n <= c.end;
}
