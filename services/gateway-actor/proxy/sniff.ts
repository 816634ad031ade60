// Reading the target out of the first bytes of a connection, for the name-routed listeners (Raven's DNS mode,
// where every node name resolves to the proxy): a TLS ClientHello names it in SNI, a plain HTTP request in its
// Host header. Pure functions over a buffer that may still be incomplete; the listener passes the same bytes on
// untouched, so TLS stays end to end.

export type Sniffed =
  | { kind: "more" }
  | { kind: "tls"; serverName: string | null }
  | { kind: "http"; host: string | null }
  | { kind: "invalid"; reason: string };

/** Enough for any real ClientHello or HTTP request head; a longer one is refused. */
export const MAX_SNIFF_BYTES = 16 * 1024;

export function sniff(buf: Buffer): Sniffed {
  if (buf.length === 0) return { kind: "more" };
  return buf[0] === 0x16 ? sniffTls(buf) : sniffHttp(buf);
}

function sniffHttp(buf: Buffer): Sniffed {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0)
    return buf.length >= MAX_SNIFF_BYTES
      ? { kind: "invalid", reason: "HTTP request head larger than 16 KiB" }
      : { kind: "more" };
  const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
  if (!/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(lines[0] ?? "")) return { kind: "invalid", reason: "not an HTTP/1.x request" };
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === "host")
      return { kind: "http", host: hostOnly(line.slice(colon + 1).trim()) };
  }
  return { kind: "http", host: null };
}

/** `name:port` or `[v6]:port` -> the host part. */
export function hostOnly(hostPort: string): string {
  if (hostPort.startsWith("[")) return hostPort.slice(0, hostPort.indexOf("]") + 1);
  const colon = hostPort.lastIndexOf(":");
  return colon >= 0 ? hostPort.slice(0, colon) : hostPort;
}

// TLS record: type(1)=22 version(2) length(2); handshake: type(1)=1 length(3) version(2) random(32)
// session_id<1> cipher_suites<2> compression<1> extensions<2> { type(2) length(2) data } ...
// server_name (type 0): list<2> { name_type(1)=0 host_name<2> }.
function sniffTls(buf: Buffer): Sniffed {
  if (buf.length < 5) return { kind: "more" };
  const recordLen = buf.readUInt16BE(3);
  if (recordLen > MAX_SNIFF_BYTES) return { kind: "invalid", reason: "TLS record too large for a ClientHello" };
  if (buf.length < 5 + recordLen) return { kind: "more" };
  const hs = buf.subarray(5, 5 + recordLen);
  if (hs[0] !== 0x01) return { kind: "invalid", reason: "first TLS handshake message is not a ClientHello" };
  if (hs.length < 4) return { kind: "invalid", reason: "truncated ClientHello" };
  const hsLen = hs.readUIntBE(1, 3);
  // A ClientHello split over several records is legal but not seen from real clients; refuse it clearly.
  if (hsLen + 4 > hs.length) return { kind: "invalid", reason: "ClientHello spans several TLS records" };
  let p = 4 + 2 + 32;
  const need = (n: number) => p + n <= hs.length;
  if (!need(1)) return { kind: "invalid", reason: "truncated ClientHello" };
  p += 1 + hs[p]!;
  if (!need(2)) return { kind: "invalid", reason: "truncated ClientHello" };
  p += 2 + hs.readUInt16BE(p);
  if (!need(1)) return { kind: "invalid", reason: "truncated ClientHello" };
  p += 1 + hs[p]!;
  if (!need(2)) return { kind: "tls", serverName: null };
  const extEnd = p + 2 + hs.readUInt16BE(p);
  p += 2;
  if (extEnd > hs.length) return { kind: "invalid", reason: "truncated ClientHello extensions" };
  while (p + 4 <= extEnd) {
    const type = hs.readUInt16BE(p);
    const len = hs.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return { kind: "invalid", reason: "truncated ClientHello extension" };
    if (type === 0) {
      let q = p + 2;
      const listEnd = p + len;
      while (q + 3 <= listEnd) {
        const nameType = hs[q]!;
        const nameLen = hs.readUInt16BE(q + 1);
        q += 3;
        if (q + nameLen > listEnd) break;
        if (nameType === 0) return { kind: "tls", serverName: hs.subarray(q, q + nameLen).toString("ascii") };
        q += nameLen;
      }
      return { kind: "invalid", reason: "malformed server_name extension" };
    }
    p += len;
  }
  return { kind: "tls", serverName: null };
}
