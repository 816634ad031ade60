// `raven secrets`: the credentials deploy/ mounts, made once and reused, private, never printed.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeSecrets } from "../../../services/cli/secrets";
import { domainToken } from "../../../shared/pki";

const dir = mkdtempSync(join(tmpdir(), "raven-secrets-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("raven secrets", () => {
  it("makes the fleet CA, proxy key, secret, PSK and one token per edge domain, private, and prints none", async () => {
    const plan = await makeSecrets(dir, ["factory-a", "shop-b"]);
    const secret = readFileSync(join(dir, "secret"), "utf8").trim();
    for (const d of ["factory-a", "shop-b"]) {
      const file = join(dir, "edge", `token-${d}`);
      expect(readFileSync(file, "utf8")).toBe(domainToken(secret, d));
      expect(statSync(file).mode & 0o777).toBe(0o600);
    }
    for (const f of ["proxy.key", "secret", "tunnel.psk", "ca.key"])
      expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    const printed = plan.commands.join("\n");
    expect(printed).toContain("raven-proxy-edge --from-file=ca.crt=");
    expect(printed).toContain(`--from-file=token-shop-b=${join(dir, "edge", "token-shop-b")}`);
    expect(printed).not.toContain(secret);
    expect(printed).not.toContain(readFileSync(join(dir, "tunnel.psk"), "utf8").trim());
  });

  it("reuses what is there: the same secret and PSK, so tokens stay valid", async () => {
    const before = ["secret", "tunnel.psk", "ca.crt"].map((f) => readFileSync(join(dir, f), "utf8"));
    await makeSecrets(dir, ["factory-a", "vehicle-c"]);
    expect(["secret", "tunnel.psk", "ca.crt"].map((f) => readFileSync(join(dir, f), "utf8"))).toEqual(before);
  });
});
