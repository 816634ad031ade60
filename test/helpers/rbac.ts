// Kubernetes RBAC, evaluated the way the API server's authorizer does for what Raven needs: the ClusterRoles
// and Roles bound to a ServiceAccount (ClusterRoleBindings, RoleBindings in the request's namespace), rules by
// API group, resource (with subresource: "gateways/status"), verb and resourceNames. A request's verb comes
// from its method and path: GET of an object is get, of a collection list (watch with watch=1|true); POST
// create, PUT update, PATCH patch, DELETE delete. resourceNames limit get/update/patch/delete by the name in
// the path, and list/watch by a `metadata.name=` field selector; create cannot be limited by name.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import type { ApiRequest } from "../kube-api/server";

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
type Obj = {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
  roleRef?: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
};

export type Attributes = {
  verb: string;
  group: string;
  resource: string;
  namespace: string | undefined;
  name: string | undefined;
};

/** Every YAML document of every file in `dir`. */
export function loadManifests(dir: string): Obj[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), "utf8")).map((d) => d.toJS() as Obj))
    .filter((o) => o && typeof o === "object");
}

/** What a request asks to do, or null for a non-resource path (discovery, /version). */
export function attributesOf(r: ApiRequest): Attributes | null {
  const segs = r.path.split("/").filter((s) => s !== "");
  let rest: string[];
  let group: string;
  if (segs[0] === "api" && segs[1] === "v1") {
    group = "";
    rest = segs.slice(2);
  } else if (segs[0] === "apis" && segs.length >= 3) {
    group = segs[1]!;
    rest = segs.slice(3);
  } else return null;
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource, name, sub] = rest;
  if (!resource) return null;
  const watch = r.query.get("watch") === "1" || r.query.get("watch") === "true";
  const verb = {
    GET: name ? "get" : watch ? "watch" : "list",
    POST: "create",
    PUT: "update",
    PATCH: "patch",
    DELETE: name ? "delete" : "deletecollection",
  }[r.method];
  if (!verb) return null;
  const selected = /(?:^|,)metadata\.name==?([^,]+)/.exec(r.query.get("fieldSelector") ?? "")?.[1];
  return {
    verb,
    group,
    resource: sub ? `${resource}/${sub}` : resource,
    namespace,
    name: name ?? (verb === "list" || verb === "watch" ? selected : undefined),
  };
}

/** The rules that apply to ServiceAccount `sa` (namespace/name) in `namespace` (undefined: cluster scope). */
export function rulesFor(manifests: Obj[], sa: string, namespace: string | undefined): Rule[] {
  const [saNs, saName] = sa.split("/");
  const bound = (b: Obj) =>
    (b.subjects ?? []).some((s) => s.kind === "ServiceAccount" && s.name === saName && s.namespace === saNs);
  const role = (kind: string, name: string, ns?: string) =>
    manifests.find(
      (o) => o.kind === kind && o.metadata.name === name && (ns === undefined || o.metadata.namespace === ns),
    );
  const rules: Rule[] = [];
  for (const b of manifests.filter((o) => o.kind === "ClusterRoleBinding" && bound(o)))
    rules.push(...(role("ClusterRole", b.roleRef!.name)?.rules ?? []));
  if (namespace !== undefined)
    for (const b of manifests.filter(
      (o) => o.kind === "RoleBinding" && o.metadata.namespace === namespace && bound(o),
    )) {
      const r =
        b.roleRef!.kind === "Role" ? role("Role", b.roleRef!.name, namespace) : role("ClusterRole", b.roleRef!.name);
      rules.push(...(r?.rules ?? []));
    }
  return rules;
}

const matches = (rule: Rule, a: Attributes) =>
  rule.apiGroups.some((g) => g === "*" || g === a.group) &&
  rule.resources.some((r) => r === "*" || r === a.resource) &&
  rule.verbs.some((v) => v === "*" || v === a.verb) &&
  (!rule.resourceNames?.length || (a.name !== undefined && a.verb !== "create" && rule.resourceNames.includes(a.name)));

/** The rule allowing `a`, if one does. */
export function allowedBy(manifests: Obj[], sa: string, a: Attributes): Rule | undefined {
  return rulesFor(manifests, sa, a.namespace).find((r) => matches(r, a));
}

/** Every (rule, verb, resource, name) a ServiceAccount is granted, as strings: to check each was used. */
export function grants(manifests: Obj[], sa: string): { grant: string; covers: (a: Attributes) => boolean }[] {
  const [saNs, saName] = sa.split("/");
  const out: { grant: string; covers: (a: Attributes) => boolean }[] = [];
  const bound = (b: Obj) =>
    (b.subjects ?? []).some((s) => s.kind === "ServiceAccount" && s.name === saName && s.namespace === saNs);
  for (const b of manifests.filter((o) => (o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding") && bound(o))) {
    const ns = b.kind === "RoleBinding" ? b.metadata.namespace : undefined;
    const role = manifests.find(
      (o) =>
        o.kind === b.roleRef!.kind &&
        o.metadata.name === b.roleRef!.name &&
        (o.kind === "ClusterRole" || o.metadata.namespace === ns),
    );
    for (const rule of role?.rules ?? [])
      for (const group of rule.apiGroups)
        for (const resource of rule.resources)
          for (const verb of rule.verbs)
            for (const name of rule.resourceNames?.length ? rule.resourceNames : [undefined]) {
              const grant = `${verb} ${group || "core"}/${resource}${ns ? ` in ${ns}` : ""}${name ? ` named ${name}` : ""}`;
              out.push({
                grant,
                covers: (a) =>
                  a.verb === verb &&
                  a.group === group &&
                  a.resource === resource &&
                  (ns === undefined || a.namespace === ns) &&
                  (name === undefined || a.name === name),
              });
            }
  }
  return out;
}
