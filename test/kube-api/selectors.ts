// Label and field selectors as the API server parses them from `labelSelector` / `fieldSelector`:
// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma = AND; fields `metadata.name` and
// `metadata.namespace` with =, ==, !=. A malformed selector throws a 400 BadRequest ApiError.
import { badRequest } from "./errors";
import { labelsOf, objectAt, str, type JsonObject } from "./json";

export type Matcher = (o: JsonObject) => boolean;

/** Splits on commas outside parentheses. */
function splitTop(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

const KEY = /^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$/;

function checkKey(key: string, selector: string): string {
  if (!KEY.test(key)) throw badRequest(`unable to parse requirement: invalid label key "${key}" in "${selector}"`);
  return key;
}

function parseRequirement(req: string, selector: string): Matcher {
  const set = /^(\S+)\s+(in|notin)\s+\((.*)\)$/.exec(req);
  if (set) {
    const key = checkKey(set[1] ?? "", selector);
    const values = new Set((set[3] ?? "").split(",").map((v) => v.trim()));
    if (set[2] === "in") return (o) => values.has(labelsOf(o).get(key) ?? "\u0000absent");
    return (o) => {
      const v = labelsOf(o).get(key);
      return v === undefined || !values.has(v);
    };
  }
  const eq = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(req);
  if (eq) {
    const key = checkKey(eq[1] ?? "", selector);
    const value = eq[3] ?? "";
    if (eq[2] === "!=") return (o) => labelsOf(o).get(key) !== value;
    return (o) => labelsOf(o).get(key) === value;
  }
  if (req.startsWith("!")) {
    const key = checkKey(req.slice(1).trim(), selector);
    return (o) => !labelsOf(o).has(key);
  }
  const key = checkKey(req, selector);
  return (o) => labelsOf(o).has(key);
}

export function parseLabelSelector(selector: string | null): Matcher {
  if (!selector) return () => true;
  const reqs = splitTop(selector).map((r) => parseRequirement(r, selector));
  return (o) => reqs.every((m) => m(o));
}

export function parseFieldSelector(selector: string | null): Matcher {
  if (!selector) return () => true;
  const reqs = splitTop(selector).map((req): Matcher => {
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(req);
    const field = m?.[1]?.trim();
    if (!m || (field !== "metadata.name" && field !== "metadata.namespace")) {
      throw badRequest(`field label not supported: ${field ?? req}`);
    }
    const key = field === "metadata.name" ? "name" : "namespace";
    const value = (m[3] ?? "").trim();
    const get = (o: JsonObject): string => str(objectAt(o["metadata"])?.[key]) ?? "";
    return m[2] === "!=" ? (o) => get(o) !== value : (o) => get(o) === value;
  });
  return (o) => reqs.every((m) => m(o));
}
