// The fleet's secrets and certificates, kept in one directory and made with the `openssl` CLI (execFile, no
// shell): an EC P-256 CA ("Raven fleet CA", 10 years), server certificates for the proxy and the node
// kubelets signed by it, and a 32-byte shared secret from which each domain's proxy token is derived.
//
// Guarantees:
// - ensurePki is idempotent: files that are present and usable are reused untouched. A certificate that is
//   missing, unparseable, not issued by the current CA, not matching its key, or within 30 days of expiry is
//   re-issued; a new CA re-issues every leaf. The secret is created once and never replaced (a malformed one
//   is an error: replacing it would silently invalidate every token).
// - Files appear whole: each is made in a private temp directory and renamed into place. Keys and the secret
//   are mode 0600, the directory 0700. One caller at a time per directory (the fleet launcher): two
//   concurrent first runs could each make a CA.
// - Tokens are HMAC-SHA256(secret, "raven-proxy:" + domain), compared in constant time.
import { execFile } from "node:child_process";
import { createHmac, createPrivateKey, randomBytes, timingSafeEqual, X509Certificate } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { systemClock, type Clock } from "./clock";
import { PkiError } from "./errors";

export type PkiFiles = Readonly<{
  dir: string;
  caKey: string;
  caCert: string;
  proxyKey: string;
  proxyCert: string;
  kubeletKey: string;
  kubeletCert: string;
  secret: string;
}>;

export type KeyPair = Readonly<{ key: string; cert: string }>;
export type LoadedPki = Readonly<{ files: PkiFiles; caCert: string; proxy: KeyPair; kubelet: KeyPair; secret: string }>;

export const CA_DAYS = 3650;
export const LEAF_DAYS = 825;
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
const HEX64 = /^[0-9a-f]{64}$/i;
const TOKEN_CONTEXT = "raven-proxy:";

type Leaf = Readonly<{ name: "proxy" | "kubelet"; cn: string; san: readonly string[] }>;
const LEAVES: readonly Leaf[] = [
  { name: "proxy", cn: "raven-proxy", san: ["DNS:raven-proxy"] },
  // Kubelets are reached by node IPs that repeat across domains, so clients verify by name, not by IP.
  {
    name: "kubelet",
    cn: "raven-kubelet",
    san: ["DNS:raven-kubelet", "DNS:*.raven.local", "DNS:localhost", "IP:127.0.0.1"],
  },
];

export function pkiFiles(dir: string): PkiFiles {
  return {
    dir,
    caKey: join(dir, "ca.key"),
    caCert: join(dir, "ca.crt"),
    proxyKey: join(dir, "proxy.key"),
    proxyCert: join(dir, "proxy.crt"),
    kubeletKey: join(dir, "kubelet.key"),
    kubeletCert: join(dir, "kubelet.crt"),
    secret: join(dir, "secret"),
  };
}

function openssl(args: readonly string[], cwd: string, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("openssl", args, { cwd }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      const why = missing ? "the openssl CLI is not installed" : String(stderr || err.message).trim();
      reject(new PkiError(file, `openssl ${args.join(" ")} failed: ${why}`, { cause: err }));
    });
  });
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function parseCert(pem: string | undefined): X509Certificate | undefined {
  if (pem === undefined) return undefined;
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function keyMatches(cert: X509Certificate, keyPem: string | undefined): boolean {
  if (keyPem === undefined) return false;
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

const fresh = (cert: X509Certificate, nowMs: number) => Date.parse(cert.validTo) - nowMs > RENEW_BEFORE_MS;

function usableCa(files: PkiFiles, nowMs: number): X509Certificate | undefined {
  const ca = parseCert(readIfPresent(files.caCert));
  if (!ca || !ca.ca || !fresh(ca, nowMs) || !keyMatches(ca, readIfPresent(files.caKey))) return undefined;
  return ca;
}

function usableLeaf(keyFile: string, certFile: string, ca: X509Certificate, nowMs: number): boolean {
  const cert = parseCert(readIfPresent(certFile));
  return (
    !!cert &&
    cert.checkIssued(ca) &&
    cert.verify(ca.publicKey) &&
    fresh(cert, nowMs) &&
    keyMatches(cert, readIfPresent(keyFile))
  );
}

const genKey = (out: string) => ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out];

function reqConfig(cn: string, ext: string[]): string {
  return ["[req]", "distinguished_name = dn", "prompt = no", "[dn]", `CN = ${cn}`, "[ext]", ...ext, ""].join("\n");
}

/** Makes key+cert in `tmp`, then moves them over `keyFile`/`certFile` (key first: a crash in between leaves a mismatch, which is re-issued). */
function install(tmp: string, keyFile: string, certFile: string): void {
  chmodSync(join(tmp, "out.key"), 0o600);
  renameSync(join(tmp, "out.key"), keyFile);
  renameSync(join(tmp, "out.crt"), certFile);
}

async function makeCa(files: PkiFiles, tmp: string): Promise<void> {
  const cnf = join(tmp, "ca.cnf");
  writeFileSync(
    cnf,
    reqConfig("Raven fleet CA", [
      "basicConstraints = critical,CA:TRUE,pathlen:0",
      "keyUsage = critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier = hash",
    ]),
  );
  await openssl(genKey("out.key"), tmp, files.caKey);
  await openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "out.key",
      "-sha256",
      "-days",
      String(CA_DAYS),
      "-config",
      cnf,
      "-extensions",
      "ext",
      "-out",
      "out.crt",
    ],
    tmp,
    files.caCert,
  );
  install(tmp, files.caKey, files.caCert);
}

async function makeLeaf(files: PkiFiles, leaf: Leaf, tmp: string): Promise<void> {
  const keyFile = leaf.name === "proxy" ? files.proxyKey : files.kubeletKey;
  const certFile = leaf.name === "proxy" ? files.proxyCert : files.kubeletCert;
  const cnf = join(tmp, `${leaf.name}.cnf`);
  writeFileSync(
    cnf,
    reqConfig(leaf.cn, [
      "basicConstraints = critical,CA:FALSE",
      "keyUsage = critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage = serverAuth,clientAuth",
      `subjectAltName = ${leaf.san.join(",")}`,
      "subjectKeyIdentifier = hash",
      "authorityKeyIdentifier = keyid",
    ]),
  );
  await openssl(genKey("out.key"), tmp, keyFile);
  await openssl(["req", "-new", "-key", "out.key", "-config", cnf, "-out", "out.csr"], tmp, certFile);
  const serial = `0x${randomBytes(15).toString("hex")}`; // 120 random bits: positive and unique enough
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "out.csr",
      "-CA",
      files.caCert,
      "-CAkey",
      files.caKey,
      "-set_serial",
      serial,
      "-days",
      String(LEAF_DAYS),
      "-sha256",
      "-extfile",
      cnf,
      "-extensions",
      "ext",
      "-out",
      "out.crt",
    ],
    tmp,
    certFile,
  );
  install(tmp, keyFile, certFile);
}

/** Creates whatever is missing or unusable in `dir` (see the header) and returns the file paths. */
export async function ensurePki(dir: string, options: Readonly<{ clock?: Clock }> = {}): Promise<PkiFiles> {
  const files = pkiFiles(dir);
  const nowMs = (options.clock ?? systemClock).wallMs();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tmp = mkdtempSync(join(dir, ".tmp-"));
  try {
    let ca = usableCa(files, nowMs);
    const newCa = ca === undefined;
    if (newCa) {
      await makeCa(files, tmp);
      ca = new X509Certificate(readFileSync(files.caCert));
    }
    for (const leaf of LEAVES) {
      const keyFile = leaf.name === "proxy" ? files.proxyKey : files.kubeletKey;
      const certFile = leaf.name === "proxy" ? files.proxyCert : files.kubeletCert;
      if (newCa || !usableLeaf(keyFile, certFile, ca!, nowMs)) await makeLeaf(files, leaf, tmp);
    }
    if (!existsSync(files.secret)) {
      writeFileSync(join(tmp, "secret"), `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
      renameSync(join(tmp, "secret"), files.secret);
    }
    readSecret(files.secret);
    for (const f of [files.caKey, files.proxyKey, files.kubeletKey, files.secret]) chmodSync(f, 0o600);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return files;
}

function readRequired(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    throw new PkiError(
      file,
      missing ? "missing; create the fleet PKI first (ensurePki)" : `unreadable: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

function readSecret(file: string): string {
  const secret = readRequired(file).trim();
  if (!HEX64.test(secret))
    throw new PkiError(
      file,
      "must hold 64 hex characters (32 bytes); delete it to have a new one made (this invalidates every domain token)",
    );
  return secret.toLowerCase();
}

function readCert(file: string): string {
  const pem = readRequired(file);
  if (!parseCert(pem)) throw new PkiError(file, "is not a PEM certificate");
  return pem;
}

/** Reads the PKI back; a missing or malformed file is a PkiError naming it. */
export function loadPki(dir: string): LoadedPki {
  const files = pkiFiles(dir);
  return {
    files,
    caCert: readCert(files.caCert),
    proxy: { key: readRequired(files.proxyKey), cert: readCert(files.proxyCert) },
    kubelet: { key: readRequired(files.kubeletKey), cert: readCert(files.kubeletCert) },
    secret: readSecret(files.secret),
  };
}

function secretBytes(secretHex: string): Buffer {
  if (!HEX64.test(secretHex)) throw new PkiError("secret", "must be 64 hex characters (32 bytes)");
  return Buffer.from(secretHex, "hex");
}

/** The proxy token of `domain`: HMAC-SHA256(secret, "raven-proxy:" + domain), hex. */
export function domainToken(secretHex: string, domain: string): string {
  return createHmac("sha256", secretBytes(secretHex))
    .update(TOKEN_CONTEXT + domain)
    .digest("hex");
}

/** True when `token` is `domain`'s token; constant-time in the token's content. */
export function verifyDomainToken(secretHex: string, domain: string, token: unknown): boolean {
  if (typeof token !== "string" || !HEX64.test(token)) return false;
  return timingSafeEqual(Buffer.from(domainToken(secretHex, domain), "hex"), Buffer.from(token, "hex"));
}
