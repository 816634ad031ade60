// The tunnel's pre-shared key file, which both VPN drivers read: strongSwan authenticates IKE with it, and
// WireGuard derives every gateway's key pair from it (wireguard-conf.ts). There is no default key: setup
// creates a random one, and a file that is missing, readable by others or short is refused by name.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { PkiError } from "../../shared/errors";

export const MIN_PSK_BYTES = 16;

/** Creates `file` with 32 random bytes (hex, mode 0600) unless it exists; returns the path. Setup calls this. */
export function ensurePskFile(file: string): string {
  if (existsSync(file)) return file;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  return file;
}

/** Reads and checks the PSK; throws PkiError naming the file when it is missing, readable by others or short. */
export function readPsk(file: string): Buffer {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    throw new PkiError(file, "the tunnel pre-shared key file is missing (setup creates it; there is no default key)", {
      cause: err,
    });
  }
  if ((st.mode & 0o077) !== 0)
    throw new PkiError(
      file,
      `the pre-shared key must not be readable by group or others (mode ${(st.mode & 0o777).toString(8)}; chmod 600)`,
    );
  const psk = Buffer.from(readFileSync(file, "utf8").trim(), "utf8");
  if (psk.length < MIN_PSK_BYTES)
    throw new PkiError(file, `the pre-shared key is ${psk.length} bytes; at least ${MIN_PSK_BYTES} are required`);
  return psk;
}
