// Patches the API server accepts: JSON merge patch (RFC 7386) and JSON patch (RFC 6902: add, remove, replace,
// move, copy, test). Pure: inputs are not mutated. A malformed or failing JSON patch throws an ApiError
// (the real server answers 422 for a failed `test` or a bad path, 400 for a malformed document).
import { ApiError, badRequest } from "./errors";
import { clone, deepEqual, isObject, str, type Json } from "./json";

export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function unprocessable(message: string): ApiError {
  return new ApiError(422, "Invalid", message);
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw badRequest(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(arr: Json[], token: string, forAdd: boolean): number {
  if (forAdd && token === "-") return arr.length;
  const i = /^(0|[1-9][0-9]*)$/.test(token) ? Number(token) : NaN;
  if (Number.isNaN(i) || i > arr.length || (!forAdd && i === arr.length)) {
    throw unprocessable(`the server rejected our request due to an error in our request: index ${token} out of range`);
  }
  return i;
}

/** The value at the end of `tokens` (every one of them must exist). */
function walk(doc: Json, tokens: string[], path: string): Json {
  let cur: Json = doc;
  for (const t of tokens) {
    const next: Json | undefined = Array.isArray(cur)
      ? cur[arrayIndex(cur, t, false)]
      : isObject(cur)
        ? cur[t]
        : undefined;
    if (next === undefined) throw unprocessable(`doc is missing path: "${path}": missing value`);
    cur = next;
  }
  return cur;
}

/** The parent container of `tokens` and the last token. */
function parentOf(doc: Json, tokens: string[], path: string): { parent: Json; last: string } {
  const last = tokens[tokens.length - 1];
  if (last === undefined) throw unprocessable(`cannot operate on the document root: "${path}"`);
  return { parent: walk(doc, tokens.slice(0, -1), path), last };
}

function getAt(doc: Json, path: string): Json {
  return walk(doc, pointer(path), path);
}

function removeAt(doc: Json, path: string): Json {
  const { parent, last } = parentOf(doc, pointer(path), path);
  if (Array.isArray(parent)) {
    const [removed] = parent.splice(arrayIndex(parent, last, false), 1);
    return removed ?? null;
  }
  if (isObject(parent) && last in parent) {
    const v = parent[last] ?? null;
    delete parent[last];
    return v;
  }
  throw unprocessable(`doc is missing path: "${path}": missing value`);
}

function addAt(doc: Json, path: string, value: Json, replace: boolean): Json {
  const tokens = pointer(path);
  if (tokens.length === 0) return value;
  const { parent, last } = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) {
    const i = arrayIndex(parent, last, !replace);
    parent.splice(i, replace ? 1 : 0, value);
  } else if (isObject(parent)) {
    if (replace && !(last in parent)) throw unprocessable(`doc is missing key: "${path}": missing value`);
    parent[last] = value;
  } else {
    throw unprocessable(`doc is missing path: "${path}": missing value`);
  }
  return doc;
}

export function jsonPatch(target: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw badRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
  let doc = clone(target);
  for (const op of ops) {
    if (!isObject(op)) throw badRequest("json patch operation must be an object");
    const kind = str(op["op"]);
    const path = str(op["path"]);
    if (path === undefined) throw badRequest(`json patch operation "${kind ?? ""}" is missing "path"`);
    const value = op["value"];
    switch (kind) {
      case "add":
      case "replace":
        if (value === undefined) throw badRequest(`json patch ${kind} operation is missing "value"`);
        doc = addAt(doc, path, clone(value), kind === "replace");
        break;
      case "remove":
        removeAt(doc, path);
        break;
      case "move":
      case "copy": {
        const from = str(op["from"]);
        if (from === undefined) throw badRequest(`json patch ${kind} operation is missing "from"`);
        const v = kind === "move" ? removeAt(doc, from) : clone(getAt(doc, from));
        doc = addAt(doc, path, v, false);
        break;
      }
      case "test":
        if (!deepEqual(getAt(doc, path), value ?? null)) {
          throw unprocessable(
            `the server rejected our request due to an error in our request: testing value ${path} failed`,
          );
        }
        break;
      default:
        throw badRequest(`Unexpected kind: ${kind ?? "<missing>"}`);
    }
  }
  return doc;
}
