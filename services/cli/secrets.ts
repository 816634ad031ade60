// `raven secrets`: the credentials a Kubernetes deployment (deploy/) mounts, made in one directory and
// printed as the kubectl commands that turn them into Secrets. Idempotent (shared/pki.ts's ensurePki and
// lib/vpn's ensurePskFile reuse what is there and usable); keys, the secret and the tokens are 0600 and
// never printed.
//   raven-proxy-cloud  ca.crt, proxy.crt, proxy.key, secret   cloud agents (the proxy's server side)
//   raven-proxy-edge   ca.crt, token-<domain> per edge domain   edge agents (each dials in with its token)
//   raven-tunnel-psk   psk                                     every agent, tunnel mode (IKEv2 PSK)
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensurePskFile } from "../../lib/vpn";
import { domainToken, ensurePki } from "../../shared/pki";

export type SecretsPlan = { dir: string; commands: string[] };

export async function makeSecrets(dir: string, edgeDomains: readonly string[]): Promise<SecretsPlan> {
  const pki = await ensurePki(dir);
  const psk = ensurePskFile(join(dir, "tunnel.psk"));
  const secret = readFileSync(pki.secret, "utf8").trim();
  const edgeDir = join(dir, "edge");
  mkdirSync(edgeDir, { recursive: true, mode: 0o700 });
  for (const d of edgeDomains) writeFileSync(join(edgeDir, `token-${d}`), domainToken(secret, d), { mode: 0o600 });
  const ns = "kubectl -n kube-system create secret generic";
  return {
    dir,
    commands: [
      `${ns} raven-proxy-cloud --from-file=ca.crt=${pki.caCert} --from-file=proxy.crt=${pki.proxyCert} --from-file=proxy.key=${pki.proxyKey} --from-file=secret=${pki.secret}`,
      `${ns} raven-proxy-edge --from-file=ca.crt=${pki.caCert} ${edgeDomains.map((d) => `--from-file=token-${d}=${join(edgeDir, `token-${d}`)}`).join(" ")}`,
      `${ns} raven-tunnel-psk --from-file=psk=${psk}`,
    ],
  };
}
