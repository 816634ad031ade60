// Structural-schema pruning of custom resources, as the API server does with a CRD's openAPIV3Schema: fields
// not declared under `properties` / `additionalProperties` / `items` are removed (default), or reported so a
// `fieldValidation=Strict` write can be refused. `x-kubernetes-preserve-unknown-fields: true` keeps a
// subtree as is; the root's apiVersion, kind and metadata are never pruned. No type or `required` checks.
import { isObject, type Json, type JsonObject } from "./json";

function child(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Removes undeclared fields from `value` in place; returns their paths (e.g. `spec.endpoints[0].foo`). */
function prune(value: Json, schema: JsonObject, path: string, unknown: string[]): void {
  if (schema["x-kubernetes-preserve-unknown-fields"] === true) return;
  if (Array.isArray(value)) {
    const items = schema["items"];
    if (isObject(items)) value.forEach((v, i) => prune(v, items, `${path}[${i}]`, unknown));
    return;
  }
  if (!isObject(value)) return;
  const props = isObject(schema["properties"]) ? schema["properties"] : undefined;
  const additional = schema["additionalProperties"];
  for (const key of Object.keys(value)) {
    const v = value[key];
    if (v === undefined) continue;
    const declared = props?.[key];
    if (isObject(declared)) prune(v, declared, child(path, key), unknown);
    else if (isObject(additional)) prune(v, additional, child(path, key), unknown);
    else if (additional === true) continue;
    else {
      unknown.push(child(path, key));
      delete value[key];
    }
  }
}

/** Prunes a whole custom resource (mutates it); returns the unknown fields found, in document order. */
export function pruneObject(o: JsonObject, schema: JsonObject | undefined): string[] {
  if (!schema) return [];
  const unknown: string[] = [];
  const props = isObject(schema["properties"]) ? schema["properties"] : {};
  for (const key of Object.keys(o)) {
    if (key === "apiVersion" || key === "kind" || key === "metadata") continue;
    const v = o[key];
    if (v === undefined) continue;
    const declared = props[key];
    if (isObject(declared)) prune(v, declared, key, unknown);
    else if (schema["x-kubernetes-preserve-unknown-fields"] !== true) {
      unknown.push(key);
      delete o[key];
    }
  }
  return unknown;
}
