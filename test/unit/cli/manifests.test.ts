// Manifest files as `raven gateways apply -f` reads them, and what `raven gateways -o yaml|json` prints
// reading back to the same Gateways.
import { describe, expect, it } from "vitest";
import { gatewaysJson, gatewaysYaml, readManifests } from "../../../services/cli/manifests";
import { ConfigError } from "../../../shared/errors";
import { soloGateway, type Gateway } from "../../../shared/gateway";
import { parseGatewayManifest } from "../../../shared/gateway-manifest";

const bytes = (text: string) => new TextEncoder().encode(text);
const read = (text: string) => readManifests(bytes(text), "gw.yaml");

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("expected a ConfigError");
}

const GW_YAML = `apiVersion: raven.openyurt.io/v1beta1
kind: Gateway
metadata:
  name: gw-hz
spec:
  proxyConfig:
    Replicas: 2
    proxyHTTPPort: "10255,9445"
  tunnelConfig:
    Replicas: 1
  endpoints:
    - nodeName: hz-1
      type: proxy
    - nodeName: hz-2
      type: proxy
      port: 0
    - nodeName: hz-1
      type: tunnel
  exposeType: ""
`;

describe("readManifests", () => {
  it("reads one YAML object, as OpenYurt's docs write a Gateway", () => {
    const [only, ...more] = read(GW_YAML);
    expect(more).toEqual([]);
    expect(only!.where).toBe("gw.yaml");
    const gw = parseGatewayManifest(only!.raw, only!.where);
    expect(gw.spec.proxyConfig).toEqual({ Replicas: 2, proxyHTTPPort: "10255,9445" });
    expect(gw.spec.endpoints.map((e) => `${e.nodeName}/${e.type}:${e.port}`)).toEqual([
      "hz-1/proxy:10262",
      "hz-2/proxy:10262",
      "hz-1/tunnel:4500",
    ]);
  });

  it("reads --- separated documents, skipping empty ones, and names each", () => {
    const two = read(`---\n${GW_YAML}---\n${GW_YAML.replace("gw-hz", "gw-sh")}---\n`);
    expect(two.map((o) => o.where)).toEqual(["gw.yaml document 1", "gw.yaml document 2"]);
    expect(two.map((o) => (o.raw as { metadata: { name: string } }).metadata.name)).toEqual(["gw-hz", "gw-sh"]);
  });

  it("reads a List (kubectl's and raven's -o json), a GatewayList and a JSON array", () => {
    const item = { metadata: { name: "gw-a" } };
    for (const kind of ["List", "GatewayList"]) {
      const got = read(JSON.stringify({ apiVersion: "v1", kind, items: [item, item] }));
      expect(got.map((o) => o.where)).toEqual(["gw.yaml items[0]", "gw.yaml items[1]"]);
    }
    expect(read(JSON.stringify([item])).map((o) => o.where)).toEqual(["gw.yaml[0]"]);
  });

  it("refuses duplicate keys in YAML and in JSON, naming the line", () => {
    expect(configError(() => read("metadata:\n  name: a\n  name: b\n"))).toBe(
      "config -f: gw.yaml: Map keys must be unique at line 3, column 3",
    );
    expect(configError(() => read('{"metadata": {"name": "a"}, "metadata": {}}'))).toMatch(
      /^config -f: gw.yaml: Map keys must be unique at line 1, column \d+$/,
    );
  });

  it("gives a short error for a file that is not text, echoing none of its bytes", () => {
    const binary = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0xff, 0xfe, 0x1b, 0x5b]);
    expect(configError(() => readManifests(binary, "raven.bin"))).toBe(
      "config -f: raven.bin is not a text file (not UTF-8); a manifest is YAML or JSON",
    );
    expect(configError(() => readManifests(bytes("a: 1\u0000"), "nul.yaml"))).toBe(
      "config -f: nul.yaml is not a text file (it holds NUL bytes); a manifest is YAML or JSON",
    );
  });

  it("refuses a file with no objects, and a List whose items are not a list", () => {
    expect(configError(() => read("---\n---\n"))).toBe("config -f: gw.yaml holds no objects");
    expect(configError(() => read("kind: List\nitems: {}\n"))).toBe(
      "config -f: gw.yaml: items of a List must be a list",
    );
  });
});

describe("raven gateways -o yaml|json applies back unchanged", () => {
  const records = (): Gateway[] => {
    const user = parseGatewayManifest(read(GW_YAML)[0]!.raw);
    user.status = {
      term: 3,
      nodes: [{ nodeName: "hz-1", privateIP: "10.0.0.1", subnets: ["10.244.1.0/24"] }],
      activeEndpoints: [user.spec.endpoints[0]!],
      problem: "tunnel replica 1 of 1 unfilled",
    };
    const solo = soloGateway("kiosk-1");
    solo.status.term = 2;
    return [user, solo];
  };

  it("for YAML: every document parses back to the same metadata and spec", () => {
    const gws = records();
    const back = readManifests(bytes(gatewaysYaml(gws)), "out.yaml").map((o) => parseGatewayManifest(o.raw, o.where));
    expect(back.map((g) => [g.metadata, g.spec])).toEqual(gws.map((g) => [g.metadata, g.spec]));
  });

  it("for JSON: the List's items parse back to the same metadata and spec", () => {
    const gws = records();
    const back = readManifests(bytes(gatewaysJson(gws)), "out.json").map((o) => parseGatewayManifest(o.raw, o.where));
    expect(back.map((g) => [g.metadata, g.spec])).toEqual(gws.map((g) => [g.metadata, g.spec]));
  });

  it("writes Replicas with a capital R, as OpenYurt's CRD spells it", () => {
    const text = gatewaysYaml(records());
    expect(text).toContain("    Replicas: 2\n");
    expect(text).not.toMatch(/\breplicas:/);
  });
});
