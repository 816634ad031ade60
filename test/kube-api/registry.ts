// The resource types the test double serves: built-in core/v1 namespaces, nodes, configmaps, events (and
// the kinds deploy/ creates: secrets, serviceaccounts, services, apps/v1 workloads, RBAC) and
// apiextensions.k8s.io/v1 customresourcedefinitions, plus whatever the stored CRDs declare (every `served`
// version, scope, names, status subresource, schema). `applyCrd` validates a CRD, registers its resource and
// fills in `status` (acceptedNames, Established and NamesAccepted conditions) the way kubectl expects.
import { ApiError, invalid, type ResourceRef } from "./errors";
import { isObject, meta, objectAt, str, type Json, type JsonObject } from "./json";

export interface ResourceInfo extends ResourceRef {
  /** Served versions, in the CRD's order (built-ins: one). */
  versions: string[];
  /** The version objects are stored in (and that discovery prefers). */
  storageVersion: string;
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  statusSubresource: boolean;
  /** Custom resources (from a CRD): schema per version; pruned and strictly validated. */
  custom: boolean;
  schemas: Map<string, JsonObject>;
}

function builtin(
  group: string,
  version: string,
  resource: string,
  kind: string,
  namespaced: boolean,
  shortNames: string[],
  statusSubresource: boolean,
): ResourceInfo {
  return {
    group,
    resource,
    versions: [version],
    storageVersion: version,
    singular: kind.toLowerCase(),
    kind,
    listKind: `${kind}List`,
    namespaced,
    shortNames,
    categories: [],
    statusSubresource,
    custom: false,
    schemas: new Map(),
  };
}

export const CRD_REF: ResourceRef = { group: "apiextensions.k8s.io", resource: "customresourcedefinitions" };
export const NAMESPACE_REF: ResourceRef = { group: "", resource: "namespaces" };

export function refKey(r: ResourceRef): string {
  return `${r.group}/${r.resource}`;
}

export class Registry {
  private readonly byKey = new Map<string, ResourceInfo>();
  constructor() {
    for (const r of [
      builtin("", "v1", "namespaces", "Namespace", false, ["ns"], true),
      builtin("", "v1", "nodes", "Node", false, ["no"], true),
      builtin("", "v1", "configmaps", "ConfigMap", true, ["cm"], false),
      builtin("", "v1", "events", "Event", true, ["ev"], false),
      // What a deployment of Raven creates (deploy/): kept, listed and watched like any object, without the
      // controllers that would act on them.
      builtin("", "v1", "pods", "Pod", true, ["po"], true),
      builtin("", "v1", "secrets", "Secret", true, [], false),
      // Served from the kubelets by node-proxy.ts (as metrics-server serves them), listed for discovery.
      builtin("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", false, [], false),
      builtin("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", true, [], false),
      builtin("", "v1", "serviceaccounts", "ServiceAccount", true, ["sa"], false),
      builtin("", "v1", "services", "Service", true, ["svc"], true),
      builtin("apps", "v1", "deployments", "Deployment", true, ["deploy"], true),
      builtin("apps", "v1", "daemonsets", "DaemonSet", true, ["ds"], true),
      builtin("apps", "v1", "statefulsets", "StatefulSet", true, ["sts"], true),
      builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, [], false),
      builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, [], false),
      builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true, [], false),
      builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, [], false),
      builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        ["crd", "crds"],
        true,
      ),
    ]) {
      if (r.resource === "customresourcedefinitions") r.categories = ["api-extensions"];
      this.byKey.set(refKey(r), r);
    }
  }

  all(): ResourceInfo[] {
    return [...this.byKey.values()];
  }

  get(ref: ResourceRef): ResourceInfo | undefined {
    return this.byKey.get(refKey(ref));
  }

  /** The resource served at /<group>/<version>/<resource>, if any. */
  lookup(group: string, version: string, resource: string): ResourceInfo | undefined {
    const r = this.byKey.get(`${group}/${resource}`);
    return r && r.versions.includes(version) ? r : undefined;
  }

  /** group → served versions, preferred first (kube version priority: GA > beta > alpha, higher first). */
  groups(): Map<string, string[]> {
    const out = new Map<string, Set<string>>();
    for (const r of this.byKey.values()) {
      const set = out.get(r.group) ?? new Set<string>();
      for (const v of r.versions) set.add(v);
      out.set(r.group, set);
    }
    return new Map([...out].map(([g, vs]) => [g, [...vs].sort(compareVersions)]));
  }

  remove(ref: ResourceRef): void {
    this.byKey.delete(refKey(ref));
  }

  /**
   * Validates a CRD and sets its status (mutates `crd`); unless `dryRun`, registers (or re-registers) its
   * resource. Condition times already in the status are kept, so an unchanged CRD stays unchanged.
   */
  applyCrd(crd: JsonObject, dryRun = false): ResourceInfo {
    const name = str(meta(crd)["name"]) ?? "";
    const spec = objectAt(crd["spec"]);
    const names = objectAt(spec?.["names"]);
    const group = str(spec?.["group"]) ?? "";
    const plural = str(names?.["plural"]) ?? "";
    const kind = str(names?.["kind"]) ?? "";
    const causes: [string, string][] = [];
    if (!group) causes.push(["spec.group", "Required value"]);
    if (!plural) causes.push(["spec.names.plural", "Required value"]);
    if (!kind) causes.push(["spec.names.kind", "Required value"]);
    if (name !== `${plural}.${group}`)
      causes.push(["metadata.name", `Invalid value: "${name}": must be spec.names.plural+"."+spec.group`]);
    const scope = str(spec?.["scope"]);
    if (scope !== "Cluster" && scope !== "Namespaced") {
      causes.push(["spec.scope", `Unsupported value: "${scope ?? ""}": supported values: "Cluster", "Namespaced"`]);
    }
    const versions = (Array.isArray(spec?.["versions"]) ? spec["versions"] : []).filter(isObject);
    if (versions.length === 0)
      causes.push(["spec.versions", "Invalid value: null: must have exactly one version marked as storage version"]);
    const storage = versions.filter((v) => v["storage"] === true);
    if (versions.length > 0 && storage.length !== 1) {
      causes.push(["spec.versions", "Invalid value: must have exactly one version marked as storage version"]);
    }
    if (causes.length > 0) throw invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes);
    const existing = this.byKey.get(`${group}/${plural}`);
    if (existing && !existing.custom) {
      throw new ApiError(409, "Conflict", `${plural}.${group} is a built-in resource`);
    }
    const served = versions.filter((v) => v["served"] === true);
    const schemas = new Map<string, JsonObject>();
    for (const v of served) {
      const s = objectAt(objectAt(v["schema"])?.["openAPIV3Schema"]);
      if (s) schemas.set(str(v["name"]) ?? "", s);
    }
    const strings = (v: Json | undefined): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);
    const info: ResourceInfo = {
      group,
      resource: plural,
      versions: served.map((v) => str(v["name"]) ?? ""),
      storageVersion: str(storage[0]?.["name"]) ?? "",
      singular: str(names?.["singular"]) ?? kind.toLowerCase(),
      kind,
      listKind: str(names?.["listKind"]) ?? `${kind}List`,
      namespaced: scope === "Namespaced",
      shortNames: strings(names?.["shortNames"]),
      categories: strings(names?.["categories"]),
      statusSubresource: served.some((v) => isObject(objectAt(v["subresources"])?.["status"])),
      custom: true,
      schemas,
    };
    if (!dryRun) this.byKey.set(`${group}/${plural}`, info);
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const old = objectAt(crd["status"])?.["conditions"];
    const since = (type: string): string => {
      const c = (Array.isArray(old) ? old : []).filter(isObject).find((x) => x["type"] === type);
      return str(c?.["lastTransitionTime"]) ?? now;
    };
    const condition = (type: string, reason: string, message: string): JsonObject => ({
      type,
      status: "True",
      lastTransitionTime: since(type),
      reason,
      message,
    });
    crd["status"] = {
      acceptedNames: {
        plural,
        singular: info.singular,
        kind,
        listKind: info.listKind,
        ...(info.shortNames.length > 0 ? { shortNames: info.shortNames } : {}),
        ...(info.categories.length > 0 ? { categories: info.categories } : {}),
      },
      conditions: [
        condition("NamesAccepted", "NoConflicts", "no conflicts found"),
        condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
      ],
      storedVersions: [info.storageVersion],
    };
    return info;
  }
}

function versionRank(v: string): [number, number, number] {
  const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
  if (!m) return [0, 0, 0];
  const level = m[2] === undefined ? 3 : m[2] === "beta" ? 2 : 1;
  return [level, Number(m[1]), Number(m[3] ?? 0)];
}

export function compareVersions(a: string, b: string): number {
  const ra = versionRank(a);
  const rb = versionRank(b);
  for (let i = 0; i < 3; i++) if ((ra[i] ?? 0) !== (rb[i] ?? 0)) return (rb[i] ?? 0) - (ra[i] ?? 0);
  return a.localeCompare(b);
}
