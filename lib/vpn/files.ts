// File and socket helpers the VPN drivers share: private files written whole, and whether a daemon's unix
// control socket (charon's vici, wireguard-go's UAPI) accepts connections yet.
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { connect } from "node:net";

/** Writes `text` to `file` with mode 0600 via a temporary file and a rename: never half-written. */
export function writePrivate(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
}

/** Whether the unix socket at `path` exists and accepts a connection. */
export function canConnect(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((res) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      res(true);
    });
    s.once("error", () => res(false));
  });
}
