// Command-line parsing for the entrypoints: node's parseArgs, with `--help` text and errors that name the flag.
import { parseArgs } from "node:util";
import { ConfigError } from "./errors";

export type FlagSpec = Record<
  string,
  { type: "string" | "boolean"; short?: string; default?: string | boolean; multiple?: boolean; help: string }
>;

export type ParsedFlags<S extends FlagSpec> = {
  [K in keyof S]: S[K]["type"] extends "boolean"
    ? boolean
    : S[K]["multiple"] extends true
      ? string[]
      : string | undefined;
};

export function usage(command: string, summary: string, spec: FlagSpec): string {
  const lines = [`usage: ${command}`, "", summary, "", "options:"];
  for (const [name, f] of Object.entries(spec)) {
    const flag = `${f.short ? `-${f.short}, ` : "    "}--${name}${f.type === "string" ? " VALUE" : ""}`;
    const dflt = f.default !== undefined && f.default !== false ? ` (default: ${f.default})` : "";
    lines.push(`  ${flag.padEnd(28)} ${f.help}${dflt}`);
  }
  lines.push(`  ${"-h, --help".padEnd(28)} show this help`);
  return lines.join("\n");
}

/** Parses flags; returns null after printing help when --help was given. */
export function parseFlags<S extends FlagSpec>(
  argv: string[],
  command: string,
  summary: string,
  spec: S,
  allowPositionals = false,
): { flags: ParsedFlags<S>; positionals: string[] } | null {
  const options = Object.fromEntries(
    Object.entries(spec).map(([k, f]) => [
      k,
      {
        type: f.type,
        ...(f.short ? { short: f.short } : {}),
        ...(f.default !== undefined ? { default: f.default } : {}),
        ...(f.multiple ? { multiple: true } : {}),
      },
    ]),
  );
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    throw new ConfigError("arguments", `${(err as Error).message}\n\n${usage(command, summary, spec)}`);
  }
  if (parsed.values.help) {
    process.stdout.write(usage(command, summary, spec) + "\n");
    return null;
  }
  return { flags: parsed.values as ParsedFlags<S>, positionals: parsed.positionals };
}

export function requireFlag(value: string | undefined, name: string): string {
  if (!value) throw new ConfigError(`--${name}`, "is required");
  return value;
}

/** An optional flag holding a duration in ms: a positive whole number (undefined when the flag is absent). */
export function msFlag(value: string | boolean | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !/^\d{1,9}$/.test(value) || Number(value) < 1)
    throw new ConfigError(`--${name}`, `${JSON.stringify(value)} is not a positive whole number of ms`);
  return Number(value);
}

export function parseJsonFlag(value: string | undefined, name: string): unknown {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new ConfigError(`--${name}`, `is not JSON: ${(err as Error).message}`);
  }
}
