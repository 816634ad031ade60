// The verbs on one resource of the Kubernetes API test double: create, update (PUT), patch (merge, JSON,
// strategic-as-merge; 415 for strategic on custom resources and for server-side apply), delete. Owns the API
// server's write rules: namespace from the path (which must exist), status subresource split (main writes
// keep the stored status, /status writes change only status), custom resources pruned to their schema or
// refused under fieldValidation=Strict, dryRun=All stores nothing, CRDs (un)register their resources.
import { ApiError, badRequest, invalid, notFound } from "./errors";
import { clone, isObject, meta, str, type Json, type JsonObject } from "./json";
import { jsonPatch, mergePatch } from "./patch";
import { CRD_REF, NAMESPACE_REF, type Registry, type ResourceInfo } from "./registry";
import { pruneObject } from "./schema";
import type { Store } from "./store";

export interface Target {
  info: ResourceInfo;
  version: string;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

export interface WriteParams {
  dryRun: boolean;
  fieldValidation: string;
  /** Warnings for the `Warning` response header. */
  warnings: string[];
}

export function apiVersionOf(t: Target): string {
  return t.info.group ? `${t.info.group}/${t.version}` : t.version;
}

/** The object as the requested version shows it: apiVersion and kind first. */
export function present(t: Target, o: JsonObject): JsonObject {
  const { apiVersion: _a, kind: _k, ...rest } = o;
  return { apiVersion: apiVersionOf(t), kind: t.info.kind, ...rest };
}

function randomSuffix(): string {
  const chars = "bcdfghjklmnpqrstvwxz2456789";
  return Array.from({ length: 5 }, () => chars[Math.floor(Math.random() * chars.length)]).join("");
}

export class Resources {
  constructor(
    private readonly reg: Registry,
    private readonly store: Store,
  ) {}

  /** Prunes/validates a custom resource against the version's schema (mutates `o`). */
  private conform(t: Target, o: JsonObject, p: WriteParams): void {
    if (!t.info.custom) return;
    const unknown = pruneObject(o, t.info.schemas.get(t.version));
    if (unknown.length === 0 || p.fieldValidation === "Ignore") return;
    const list = unknown.map((f) => `unknown field "${f}"`);
    if (p.fieldValidation === "Strict") {
      const k = t.info.kind;
      throw badRequest(
        `${k} in version "${t.version}" cannot be handled as a ${k}: strict decoding error: ${list.join(", ")}`,
      );
    }
    p.warnings.push(...list);
  }

  private checkBody(t: Target, body: Json): JsonObject {
    if (!isObject(body)) {
      throw badRequest(
        "the body of the request was in an unknown format - accepted media types include: application/json",
      );
    }
    const kind = str(body["kind"]);
    const apiVersion = str(body["apiVersion"]);
    if (kind !== undefined && kind !== t.info.kind) {
      throw badRequest(`the kind in the data (${kind}) does not match the expected kind (${t.info.kind})`);
    }
    if (apiVersion !== undefined && apiVersion !== apiVersionOf(t)) {
      throw badRequest(
        `the API version in the data (${apiVersion}) does not match the expected API version (${apiVersionOf(t)})`,
      );
    }
    const o = present(t, clone(body));
    const m = meta(o);
    const ns = str(m["namespace"]);
    if (t.info.namespaced) {
      if (ns !== undefined && ns !== "" && ns !== t.namespace) {
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      }
      m["namespace"] = t.namespace ?? "";
    } else delete m["namespace"];
    return o;
  }

  create(t: Target, body: Json, p: WriteParams): JsonObject {
    if (t.info.namespaced && !t.namespace) {
      throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    }
    const o = this.checkBody(t, body);
    const m = meta(o);
    const generateName = str(m["generateName"]);
    if (!str(m["name"]) && generateName) m["name"] = generateName + randomSuffix();
    const name = str(m["name"]) ?? "";
    if (!name) {
      const cause: [string, string] = ["metadata.name", "Required value: name or generateName is required"];
      throw invalid(t.info.kind, t.info.group, "", [cause]);
    }
    if (t.info.namespaced && !this.store.tryGet(NAMESPACE_REF, "", t.namespace ?? "")) {
      throw notFound(NAMESPACE_REF, t.namespace ?? "");
    }
    // Like the API server: status is not settable on create, except for Nodes (kubelets register that way).
    if (t.info.statusSubresource && !(t.info.resource === "nodes" && !t.info.group)) delete o["status"];
    if (t.info.resource === "namespaces" && !t.info.group) o["status"] = { phase: "Active" };
    this.conform(t, o, p);
    const isCrd = t.info === this.reg.get(CRD_REF);
    // A CRD is validated and given its status first, and its resource registered only once stored.
    if (isCrd) this.reg.applyCrd(o, true);
    const stored = this.store.create(t.info, o, { dryRun: p.dryRun });
    if (isCrd && !p.dryRun) this.reg.applyCrd(stored);
    return stored;
  }

  /** `next` is the full new object as sent (PUT) or as patched. */
  private write(t: Target, next: JsonObject, p: WriteParams): JsonObject {
    const name = t.name ?? "";
    const nm = meta(next);
    if (str(nm["name"]) !== name) {
      throw badRequest(
        `the name of the object (${str(nm["name"]) ?? ""}) does not match the name on the URL (${name})`,
      );
    }
    const current = this.store.get(t.info, t.namespace ?? "", name);
    let o: JsonObject;
    if (t.subresource === "status") {
      o = clone(current);
      const rv = nm["resourceVersion"];
      if (rv !== undefined) meta(o)["resourceVersion"] = rv;
      else delete meta(o)["resourceVersion"];
      const status = next["status"];
      if (status === undefined) delete o["status"];
      else o["status"] = status;
    } else {
      o = next;
      const status = current["status"];
      if (t.info.statusSubresource) {
        if (status === undefined) delete o["status"];
        else o["status"] = status;
      }
    }
    this.conform(t, o, p);
    const isCrd = t.info === this.reg.get(CRD_REF) && t.subresource !== "status";
    if (isCrd) this.reg.applyCrd(o, true);
    const stored = this.store.update(t.info, o, { dryRun: p.dryRun });
    if (isCrd && !p.dryRun) this.reg.applyCrd(stored);
    return stored;
  }

  update(t: Target, body: Json, p: WriteParams): JsonObject {
    const o = this.checkBody(t, body);
    if (t.info.custom && !str(meta(o)["resourceVersion"])) {
      throw invalid(t.info.kind, t.info.group, t.name ?? "", [
        ["metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update"],
      ]);
    }
    return this.write(t, o, p);
  }

  /** 415 unless the patch type is supported for the resource (server-side apply never is). */
  checkPatchType(t: Target, contentType: string): void {
    const types = ["application/json-patch+json", "application/merge-patch+json"];
    if (!t.info.custom) types.push("application/strategic-merge-patch+json");
    if (!types.includes(contentType)) {
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: ${types.join(", ")}`,
      );
    }
  }

  patch(t: Target, contentType: string, patch: Json, p: WriteParams): JsonObject {
    this.checkPatchType(t, contentType);
    const current = present(t, this.store.get(t.info, t.namespace ?? "", t.name ?? ""));
    // Strategic merge patch is taken as a JSON merge patch (no patchStrategy/patchMergeKey handling).
    const patched =
      contentType === "application/json-patch+json" ? jsonPatch(current, patch) : mergePatch(current, patch);
    if (!isObject(patched)) throw badRequest("the patched object is not a JSON object");
    return this.write(t, this.checkBody(t, patched), p);
  }

  delete(t: Target, p: WriteParams): JsonObject {
    const gone = this.store.delete(t.info, t.namespace ?? "", t.name ?? "", { dryRun: p.dryRun });
    if (!p.dryRun && t.info === this.reg.get(CRD_REF)) {
      const group = str(isObject(gone["spec"]) ? gone["spec"]["group"] : undefined) ?? "";
      const names = isObject(gone["spec"]) ? gone["spec"]["names"] : undefined;
      const resource = str(isObject(names) ? names["plural"] : undefined) ?? "";
      const ref = { group, resource };
      for (const o of this.store.list(ref)) {
        const m = meta(o);
        this.store.delete(ref, str(m["namespace"]) ?? "", str(m["name"]) ?? "");
      }
      this.reg.remove(ref);
    }
    return gone;
  }
}
