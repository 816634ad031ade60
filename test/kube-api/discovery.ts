// Legacy (unaggregated) discovery documents, generated from the registry: /version, /api, /api/v1, /apis,
// /apis/<group>, /apis/<group>/<version>. Always plain application/json, which makes kubectl 1.32 fall back
// from aggregated discovery (apidiscovery.k8s.io/v2) to these.
import type { JsonObject } from "./json";
import type { Registry, ResourceInfo } from "./registry";

export const VERSION_INFO: JsonObject = {
  major: "1",
  minor: "32",
  gitVersion: "v1.32.0",
  gitCommit: "0000000000000000000000000000000000000000",
  gitTreeState: "clean",
  buildDate: "2024-12-11T00:00:00Z",
  goVersion: "go1.23.3",
  compiler: "gc",
  platform: "linux/amd64",
};

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

function resourceEntries(r: ResourceInfo): JsonObject[] {
  const main: JsonObject = {
    name: r.resource,
    singularName: r.singular,
    namespaced: r.namespaced,
    kind: r.kind,
    verbs: VERBS,
  };
  if (r.shortNames.length > 0) main["shortNames"] = r.shortNames;
  if (r.categories.length > 0) main["categories"] = r.categories;
  const out = [main];
  if (r.statusSubresource) {
    out.push({
      name: `${r.resource}/status`,
      singularName: "",
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: ["get", "patch", "update"],
    });
  }
  return out;
}

export function apiVersions(hostPort: string): JsonObject {
  return {
    kind: "APIVersions",
    versions: ["v1"],
    serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: hostPort }],
  };
}

/** APIResourceList for group/version, or undefined when nothing is served there. */
export function resourceList(reg: Registry, group: string, version: string): JsonObject | undefined {
  const rs = reg.all().filter((r) => r.group === group && r.versions.includes(version));
  if (rs.length === 0) return undefined;
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group ? `${group}/${version}` : version,
    resources: rs.sort((a, b) => a.resource.localeCompare(b.resource)).flatMap(resourceEntries),
  };
}

function apiGroup(group: string, versions: string[]): JsonObject {
  const gv = versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v }));
  return { name: group, versions: gv, preferredVersion: gv[0] ?? {} };
}

export function groupList(reg: Registry): JsonObject {
  const groups = [...reg.groups()].filter(([g]) => g !== "").map(([g, vs]) => apiGroup(g, vs));
  return { kind: "APIGroupList", apiVersion: "v1", groups };
}

export function group(reg: Registry, name: string): JsonObject | undefined {
  const vs = name === "" ? undefined : reg.groups().get(name);
  return vs && { kind: "APIGroup", apiVersion: "v1", ...apiGroup(name, vs) };
}
