// The OpenAPI v3 documents kubectl 1.32 needs to choose server-side field validation: an index at
// /openapi/v3 ({paths: {"api/v1": {serverRelativeURL}, "apis/<g>/<v>": ...}}) and per group-version documents
// whose PATCH operations carry `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter
// (cli-runtime's queryParamVerifierV3 looks exactly for that). Custom resources also get their CRD schema
// under components/schemas. Built-ins get no component schemas, so kubectl computes strategic merge patches
// from its compiled-in types. /openapi/v2 (protobuf) is not served.
import { createHash } from "node:crypto";
import { clone, type JsonObject } from "./json";
import type { Registry, ResourceInfo } from "./registry";

function gvPath(group: string, version: string): string {
  return group ? `apis/${group}/${version}` : `api/${version}`;
}

function schemaName(r: ResourceInfo, version: string): string {
  const reversed = r.group ? r.group.split(".").reverse().join(".") : "io.k8s.api.core";
  return `${reversed}.${version}.${r.kind}`;
}

const WRITE_PARAMS: JsonObject[] = ["dryRun", "fieldManager", "fieldValidation", "force"].map((name) => ({
  name,
  in: "query",
  schema: { type: "string", uniqueItems: true },
}));

function operation(r: ResourceInfo, version: string, action: string, params: JsonObject[]): JsonObject {
  return {
    operationId: `${action}${r.kind}`,
    parameters: params,
    responses: { "200": { description: "OK" } },
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": { group: r.group, version, kind: r.kind },
  };
}

function pathsFor(r: ResourceInfo, version: string): [string, JsonObject][] {
  const prefix = `/${gvPath(r.group, version)}${r.namespaced ? "/namespaces/{namespace}" : ""}/${r.resource}`;
  const item: JsonObject = {
    get: operation(r, version, "get", []),
    put: operation(r, version, "put", WRITE_PARAMS),
    patch: operation(r, version, "patch", WRITE_PARAMS),
    delete: operation(r, version, "delete", [{ name: "dryRun", in: "query", schema: { type: "string" } }]),
  };
  const out: [string, JsonObject][] = [
    [prefix, { get: operation(r, version, "list", []), post: operation(r, version, "post", WRITE_PARAMS) }],
    [`${prefix}/{name}`, item],
  ];
  if (r.statusSubresource) {
    out.push([
      `${prefix}/{name}/status`,
      { get: operation(r, version, "get", []), patch: operation(r, version, "patch", WRITE_PARAMS) },
    ]);
  }
  return out;
}

function document(reg: Registry, group: string, version: string): JsonObject {
  const paths: JsonObject = {};
  const schemas: JsonObject = {};
  for (const r of reg.all().filter((x) => x.group === group && x.versions.includes(version))) {
    for (const [p, item] of pathsFor(r, version)) paths[p] = item;
    const s = r.schemas.get(version);
    if (r.custom && s) {
      schemas[schemaName(r, version)] = {
        ...clone(s),
        "x-kubernetes-group-version-kind": [{ group: r.group, version, kind: r.kind }],
      };
    }
  }
  return {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: "v1.32.0" },
    paths,
    components: { schemas },
  };
}

/** The index and every group-version document, each keyed by its path below /openapi/v3/. */
export function openapiV3(reg: Registry): { index: JsonObject; docs: Map<string, JsonObject> } {
  const docs = new Map<string, JsonObject>();
  const paths: JsonObject = {};
  for (const [group, versions] of reg.groups()) {
    for (const version of versions) {
      const doc = document(reg, group, version);
      const key = gvPath(group, version);
      const hash = createHash("sha512").update(JSON.stringify(doc)).digest("hex").slice(0, 64).toUpperCase();
      docs.set(key, doc);
      paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${hash}` };
    }
  }
  return { index: { paths }, docs };
}
