// Manifest files for `raven gateways apply -f`, and the Gateways `raven gateways -o yaml|json` prints, which
// apply back unchanged. A file is YAML or JSON (JSON is read as the YAML 1.2 it is, so a duplicate key is an
// error in both): one object, a `List` (`kind: List` or `GatewayList`, as `kubectl get -o json` and `raven
// gateways -o json` print), a JSON array, or `---`-separated documents of any of those. Every object comes
// with where it was found (`FILE`, `FILE document 2`, `FILE items[3]`) for the errors that name it.
import { parseAllDocuments, stringify } from "yaml";
import { ConfigError } from "../../shared/errors";
import type { Gateway } from "../../shared/gateway";

export type ManifestObject = { where: string; raw: unknown };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The text of a manifest file, or a short error for one that is not text (no bytes echoed to the terminal). */
function textOf(bytes: Uint8Array, file: string): string {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError("-f", `${file} is not a text file (not UTF-8); a manifest is YAML or JSON`);
  }
  if (text.includes("\u0000"))
    throw new ConfigError("-f", `${file} is not a text file (it holds NUL bytes); a manifest is YAML or JSON`);
  return text;
}

export function readManifests(bytes: Uint8Array, file: string): ManifestObject[] {
  const docs = parseAllDocuments(textOf(bytes, file), { uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [];
  const out: ManifestObject[] = [];
  list.forEach((doc, i) => {
    const at = list.length > 1 ? `${file} document ${i + 1}` : file;
    const err = doc.errors[0];
    // The parser's message ends in a code frame; its first line says what and where.
    if (err) throw new ConfigError("-f", `${at}: ${err.message.split(":\n")[0]}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return; // an empty document (a trailing ---)
    if (Array.isArray(value)) return void value.forEach((raw, j) => out.push({ where: `${at}[${j}]`, raw }));
    if (isObj(value) && (value.kind === "List" || value.kind === "GatewayList")) {
      const items = value.items ?? [];
      if (!Array.isArray(items)) throw new ConfigError("-f", `${at}: items of a ${value.kind} must be a list`);
      return void items.forEach((raw, j) => out.push({ where: `${at} items[${j}]`, raw }));
    }
    out.push({ where: at, raw: value });
  });
  if (out.length === 0) throw new ConfigError("-f", `${file} holds no objects`);
  return out;
}

/** `raven gateways -o yaml`: one document per Gateway. */
export function gatewaysYaml(gws: readonly Gateway[]): string {
  return gws.map((g) => stringify(g, { lineWidth: 0 })).join("---\n");
}

/** `raven gateways -o json`: a List, as `kubectl get -o json` prints one. */
export function gatewaysJson(gws: readonly Gateway[]): string {
  return JSON.stringify({ apiVersion: "v1", kind: "List", items: gws }, null, 2) + "\n";
}
