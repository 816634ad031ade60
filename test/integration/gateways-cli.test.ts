// `raven gateways` as a user runs it, against a running fleet (real nats-server, coordinator, actors): YAML
// in, the fleet electing for it, what `-o yaml|json` prints applying back unchanged, clear errors for bad
// files, solo records kept out of reach, and a deleted Gateway's successor never going back in term.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../services/fleet/build";
import { eventually, fleetStatus, smallTopology, startTestFleet, type TestFleet } from "../helpers/fleet";

let t: TestFleet;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "raven-gw-cli-"));
  t = await startTestFleet(smallTopology());
}, 60_000);

afterAll(async () => {
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Run = { code: number; stdout: string; stderr: string };

function raven(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      join(REPO_ROOT, "bin", "raven"),
      [...args, "--nats", t.fleet.hubUrl],
      { timeout: 30_000, encoding: "utf8" },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function file(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** edge-a's Gateway as OpenYurt's docs would write it; \`proxyReplicas\` 2 puts both candidates to work. */
const gwA = (proxyReplicas: number) => `# edge-a's Gateway
apiVersion: raven.openyurt.io/v1beta1
kind: Gateway
metadata:
  name: gw-a
spec:
  proxyConfig:
    Replicas: ${proxyReplicas}
  tunnelConfig:
    Replicas: 1
  endpoints:
    - nodeName: a-gw-1
      type: proxy
    - nodeName: a-gw-1
      type: tunnel
    - nodeName: a-gw-2
      type: proxy
    - nodeName: a-gw-2
      type: tunnel
`;

const activeProxies = async (gateway: string) =>
  (await fleetStatus(t.fleet))?.domains.find((d) => d.gateway === gateway)?.active.filter((a) => a.type === "proxy");

describe("raven gateways", () => {
  it("applies YAML, and the coordinator elects for the changed Gateway at once", async () => {
    const r = await raven("gateways", "apply", "-f", file("gw-a2.yaml", gwA(2)));
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("gateway gw-a updated\n");
    await eventually("two active proxies in edge-a", 15_000, async () =>
      (await activeProxies("gw-a"))?.length === 2 ? true : undefined,
    );
    expect((await raven("gateways", "apply", "-f", join(dir, "gw-a2.yaml"))).stdout).toBe("gateway gw-a unchanged\n");
    expect((await raven("gateways", "apply", "-f", file("gw-a1.yaml", gwA(1)))).stdout).toBe("gateway gw-a updated\n");
  });

  it("prints YAML and JSON that apply back unchanged, solo records included", async () => {
    await eventually("the solo record", 15_000, async () => {
      const out = (await raven("gateways", "-o", "json")).stdout;
      return out.includes('"name": "solo-1"') ? out : undefined;
    });
    for (const output of ["yaml", "json"]) {
      const printed = await raven("gateways", "-o", output);
      expect(printed.code).toBe(0);
      const back = await raven("gateways", "apply", "-f", file(`all.${output}`, printed.stdout));
      expect(back.stderr, output).toBe("");
      expect(back.stdout.trim().split("\n").sort(), output).toEqual(
        ["gw-a", "gw-c", "solo-1"].map((n) => `gateway ${n} unchanged`),
      );
    }
  });

  it("names the bad field and changes nothing when one object of a file is bad", async () => {
    const typo = gwA(1)
      .replace("name: gw-a", "name: gw-typo")
      .replace("    Replicas: 1\n  tunnelConfig", "    replicas: 1\n  tunnelConfig");
    const r = await raven("gateways", "apply", "-f", file("two.yaml", `${gwA(1).replace("gw-a", "gw-d")}---\n${typo}`));
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe(
      `error: config -f: ${join(dir, "two.yaml")} document 2: gateway gw-typo.spec.proxyConfig.replicas: unknown field (did you mean Replicas?); the fields here are Replicas, proxyHTTPPort, proxyHTTPSPort`,
    );
    const names = (await raven("gateways", "-o", "json")).stdout;
    expect(names).not.toContain("gw-d");
  });

  it("gives a short error for a binary file", async () => {
    const r = await raven(
      "gateways",
      "apply",
      "-f",
      file("raven.bin", Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0xff, 0x1b])),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(
      `error: config -f: ${join(dir, "raven.bin")} is not a text file (not UTF-8); a manifest is YAML or JSON\n`,
    );
  });

  it("refuses to change or delete a solo record, and applies nothing of a file that changes one", async () => {
    const solo = `apiVersion: raven.openyurt.io/v1beta1
kind: Gateway
metadata:
  name: solo-1
  labels:
    raven.openyurt.io/solo: "true"
spec:
  endpoints:
    - nodeName: solo-1
      type: proxy
`;
    // A good Gateway first, the changed solo record after it: neither is written.
    const changed = await raven(
      "gateways",
      "apply",
      "-f",
      file("solo.yaml", `${gwA(1).replace("gw-a", "gw-e")}---\n${solo}`),
    );
    expect(changed.code).not.toBe(0);
    expect(changed.stderr).toContain("gateway solo-1 is node solo-1's solo record (label raven.openyurt.io/solo)");
    expect((await raven("gateways", "-o", "json")).stdout).not.toContain('"name": "gw-e"');
    const deleted = await raven("gateways", "delete", "solo-1");
    expect(deleted.code).not.toBe(0);
    expect(deleted.stderr).toContain("cannot be deleted");
    expect((await raven("gateways", "delete", "no-such-gw")).stderr).toBe(
      "error: gateway no-such-gw: no such Gateway\n",
    );
  });

  it("deletes a Gateway; applied again, its terms go on from where they were", async () => {
    const termOf = async () => (await fleetStatus(t.fleet))?.domains.find((x) => x.gateway === "gw-a")?.term;
    const before = await eventually("gw-a's term", 10_000, async () =>
      ((await termOf()) ?? 0) > 0 ? termOf() : undefined,
    );
    expect((await raven("gateways", "delete", "gw-a")).stdout).toBe("gateway gw-a deleted\n");
    await eventually("gw-a gone", 10_000, async () => ((await termOf()) === undefined ? true : undefined));
    expect((await raven("gateways", "apply", "-f", join(dir, "gw-a1.yaml"))).stdout).toBe("gateway gw-a created\n");
    await eventually("gw-a elected again", 15_000, async () =>
      (await activeProxies("gw-a"))?.length ? true : undefined,
    );
    expect(await termOf()).toBeGreaterThan(before!);
  });
});
