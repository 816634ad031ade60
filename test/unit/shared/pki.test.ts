// The fleet PKI made with the real openssl CLI in temp directories: certificate chain, modes, idempotence,
// repair, tokens, and a real TLS handshake that pins the fleet CA.
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../../shared/clock";
import { ErrorCode, PkiError } from "../../../shared/errors";
import { domainToken, ensurePki, loadPki, verifyDomainToken, type PkiFiles } from "../../../shared/pki";

const noOpenssl = spawnSync("openssl", ["version"]).error !== undefined;
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "raven-pki-"));
  dirs.push(d);
  return join(d, "pki");
};
const read = (f: string) => readFileSync(f, "utf8");
const mode = (f: string) => statSync(f).mode & 0o777;
const DAY_MS = 24 * 3600 * 1000;

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.skipIf(noOpenssl)(`ensurePki${noOpenssl ? " (skipped: the openssl CLI is not installed)" : ""}`, () => {
  let files: PkiFiles;
  beforeAll(async () => {
    files = await ensurePki(tempDir());
  }, 20_000);

  it("makes an EC P-256 CA and leaves it signed, with the right names, modes and lifetimes", () => {
    const ca = new X509Certificate(read(files.caCert));
    const proxy = new X509Certificate(read(files.proxyCert));
    const kubelet = new X509Certificate(read(files.kubeletCert));
    expect(ca.ca).toBe(true);
    expect(ca.subject).toBe("CN=Raven fleet CA");
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(Date.parse(ca.validTo) - Date.now()).toBeGreaterThan(3649 * DAY_MS);
    for (const leaf of [proxy, kubelet]) {
      expect(leaf.ca).toBe(false);
      expect(leaf.checkIssued(ca)).toBe(true);
      expect(leaf.verify(ca.publicKey)).toBe(true);
    }
    expect(proxy.subject).toBe("CN=raven-proxy");
    expect(proxy.subjectAltName).toBe("DNS:raven-proxy");
    expect(kubelet.subject).toBe("CN=raven-kubelet");
    expect(kubelet.subjectAltName).toContain("DNS:*.raven.local");
    expect(kubelet.checkHost("node-1.raven.local")).toBe("*.raven.local");
    expect(kubelet.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(mode(files.dir)).toBe(0o700);
    for (const f of [files.caKey, files.proxyKey, files.kubeletKey, files.secret]) expect(mode(f)).toBe(0o600);
    expect(read(files.secret).trim()).toMatch(/^[0-9a-f]{64}$/);
  });

  it("reuses everything on a second call", async () => {
    const before = Object.values(files)
      .slice(1)
      .map((f) => [read(f), statSync(f).mtimeMs]);
    await ensurePki(files.dir);
    expect(
      Object.values(files)
        .slice(1)
        .map((f) => [read(f), statSync(f).mtimeMs]),
    ).toEqual(before);
  });

  it("re-issues only what is missing; a new CA re-issues every leaf but keeps the secret", async () => {
    const proxyCert = read(files.proxyCert);
    const secret = read(files.secret);
    unlinkSync(files.kubeletCert);
    await ensurePki(files.dir);
    expect(read(files.proxyCert)).toBe(proxyCert);
    expect(new X509Certificate(read(files.kubeletCert)).checkIssued(new X509Certificate(read(files.caCert)))).toBe(
      true,
    );

    unlinkSync(files.caKey);
    await ensurePki(files.dir);
    const ca = new X509Certificate(read(files.caCert));
    expect(read(files.proxyCert)).not.toBe(proxyCert);
    expect(new X509Certificate(read(files.proxyCert)).verify(ca.publicKey)).toBe(true);
    expect(read(files.secret)).toBe(secret);
  }, 20_000);

  it("renews leaves within 30 days of expiry, as seen by the clock passed in", async () => {
    const ca = read(files.caCert);
    const kubelet = read(files.kubeletCert);
    await ensurePki(files.dir, { clock: new ManualClock(Date.now() + 810 * DAY_MS) });
    expect(read(files.caCert)).toBe(ca);
    expect(read(files.kubeletCert)).not.toBe(kubelet);
  }, 20_000);

  it("loadPki reads it back and names a missing or malformed file", () => {
    const pki = loadPki(files.dir);
    expect(pki.secret).toBe(read(files.secret).trim());
    expect(pki.proxy.cert).toBe(read(files.proxyCert));
    expect(pki.caCert).toContain("BEGIN CERTIFICATE");

    const dir = tempDir();
    expect(() => loadPki(dir)).toThrow(PkiError);
    expect(() => loadPki(dir)).toThrow(join(dir, "ca.crt"));
    try {
      loadPki(dir);
    } catch (err) {
      expect((err as PkiError).code).toBe(ErrorCode.Pki);
      expect((err as PkiError).file).toBe(join(dir, "ca.crt"));
    }
  });

  it("refuses a malformed secret instead of replacing it", async () => {
    const dir = tempDir();
    const f = await ensurePki(dir);
    writeFileSync(f.secret, "not hex\n");
    await expect(ensurePki(dir)).rejects.toThrow(/secret: must hold 64 hex characters/);
    expect(() => loadPki(dir)).toThrow(PkiError);
  }, 20_000);

  describe("TLS with the fleet CA pinned", () => {
    let server: Server;
    let port: number;
    let otherCa: string;
    beforeAll(async () => {
      otherCa = read((await ensurePki(tempDir())).caCert);
      server = createServer({ key: read(files.proxyKey), cert: read(files.proxyCert) }, (s) => s.end("hello\n"));
      server.on("tlsClientError", () => {});
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      port = (server.address() as { port: number }).port;
    }, 20_000);
    afterAll(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

    const handshake = (ca: string, servername: string) =>
      new Promise<string>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port, ca, servername }, () => {
          let got = "";
          s.on("data", (d) => (got += d));
          s.on("end", () => resolve(got));
        });
        s.on("error", reject);
      });

    it("accepts a client pinning ca.crt with servername raven-proxy", async () => {
      expect(await handshake(read(files.caCert), "raven-proxy")).toBe("hello\n");
    });

    it("is rejected by a client pinning another CA, or expecting another name", async () => {
      await expect(handshake(otherCa, "raven-proxy")).rejects.toThrow(/unable to verify|self.signed|certificate/i);
      await expect(handshake(read(files.caCert), "evil-proxy")).rejects.toThrow(/altnames|does not match/i);
    });
  });
});

describe("domain tokens", () => {
  const secret = "ab".repeat(32);
  it("is an HMAC per domain, verified in constant time", () => {
    const a = domainToken(secret, "edge-a");
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(domainToken(secret, "edge-a")).toBe(a);
    expect(domainToken(secret, "edge-b")).not.toBe(a);
    expect(domainToken("cd".repeat(32), "edge-a")).not.toBe(a);
    expect(verifyDomainToken(secret, "edge-a", a)).toBe(true);
    expect(verifyDomainToken(secret, "edge-a", a.toUpperCase())).toBe(true);
    expect(verifyDomainToken(secret, "edge-b", a)).toBe(false);
    expect(verifyDomainToken(secret, "edge-a", a.slice(0, 62) + (a.endsWith("0") ? "11" : "00"))).toBe(false);
    for (const bad of ["", a.slice(0, 10), `${a}00`, "zz".repeat(32), undefined, 42])
      expect(verifyDomainToken(secret, "edge-a", bad)).toBe(false);
  });

  it("rejects a secret that is not 32 hex bytes", () => {
    expect(() => domainToken("abc", "edge-a")).toThrow(PkiError);
  });
});
