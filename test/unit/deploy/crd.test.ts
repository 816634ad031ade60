// deploy/gateway-crd.yaml is OpenYurt's Gateway CRD, and says what Raven's parser reads: the same fields in
// every part, so a Gateway the API server stores is one Raven accepts, and the reverse.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../../services/fleet/build";
import { GATEWAY_FIELDS } from "../../../shared/gateway-manifest";

type Schema = { properties?: Record<string, Schema>; items?: Schema; required?: string[] };
type Version = {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: { status?: object };
  schema: { openAPIV3Schema: Schema };
};

const crd = parse(readFileSync(join(REPO_ROOT, "deploy", "gateway-crd.yaml"), "utf8")) as {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames: string[]; categories: string[] };
    versions: Version[];
  };
};
const version = (name: string) => crd.spec.versions.find((v) => v.name === name)!;
const keys = (s: Schema | undefined) => Object.keys(s?.properties ?? {}).sort();
const sorted = (l: readonly string[]) => [...l].sort();

describe("the Gateway CRD", () => {
  it("is OpenYurt's: raven.openyurt.io gateways, cluster-scoped, gw, category yurt, status subresource", () => {
    expect(crd.metadata.name).toBe("gateways.raven.openyurt.io");
    expect(crd.spec.group).toBe("raven.openyurt.io");
    expect(crd.spec.scope).toBe("Cluster");
    expect(crd.spec.names).toMatchObject({
      kind: "Gateway",
      plural: "gateways",
      shortNames: ["gw"],
      categories: ["yurt"],
    });
    expect(version("v1beta1")).toMatchObject({ served: true, storage: true, subresources: { status: {} } });
    expect(version("v1alpha1")).toMatchObject({ served: true, storage: false });
  });

  it("has, in v1beta1, exactly the fields Raven's parser reads", () => {
    const root = version("v1beta1").schema.openAPIV3Schema;
    const spec = root.properties!.spec!;
    expect(keys(root)).toEqual(sorted(GATEWAY_FIELDS.gateway));
    expect(keys(spec)).toEqual(sorted(GATEWAY_FIELDS.spec));
    expect(keys(spec.properties!.proxyConfig)).toEqual(sorted(GATEWAY_FIELDS.proxyConfig));
    expect(keys(spec.properties!.tunnelConfig)).toEqual(sorted(GATEWAY_FIELDS.tunnelConfig));
    expect(keys(spec.properties!.endpoints!.items)).toEqual(sorted(GATEWAY_FIELDS.endpoint));
    expect(keys(spec.properties!.nodeSelector)).toEqual(sorted(GATEWAY_FIELDS.nodeSelector));
    expect(keys(spec.properties!.nodeSelector!.properties!.matchExpressions!.items)).toEqual(
      sorted(GATEWAY_FIELDS.selectorRequirement),
    );
    expect(keys(root.properties!.status!.properties!.activeEndpoints!.items)).toEqual(sorted(GATEWAY_FIELDS.endpoint));
    expect(spec.properties!.proxyConfig!.required).toEqual(["Replicas"]);
  });

  it("has, in v1alpha1, the fields Raven converts", () => {
    const spec = version("v1alpha1").schema.openAPIV3Schema.properties!.spec!;
    expect(keys(spec)).toEqual(sorted(GATEWAY_FIELDS.alphaSpec));
    expect(keys(spec.properties!.endpoints!.items)).toEqual(sorted(GATEWAY_FIELDS.alphaEndpoint));
  });
});
