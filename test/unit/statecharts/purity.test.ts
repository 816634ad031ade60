// statecharts/ is pure logic (STYLE 1 and 4): no NATS, no Node built-ins (net, child_process, ...), and no
// reading of the clock or timers; time arrives in events or through xstate's clock. Checked on the source
// text, directly and through every relative import the statecharts pull in.
import { readFileSync, readdirSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const STATECHARTS = join(ROOT, "statecharts");

const stripComments = (src: string) => src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:])\/\/.*$/gm, "$1");

/** Module specifiers a source file imports, re-exports, requires or imports dynamically. */
function importsOf(src: string): string[] {
  const code = stripComments(src);
  const patterns = [
    /\b(?:import|export)\s[^;'"]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  return patterns.flatMap((re) => [...code.matchAll(re)].map((m) => m[1]!));
}

const builtins = new Set(builtinModules);
const isForbiddenModule = (spec: string) =>
  spec.startsWith("@nats-io") ||
  spec.startsWith("node:") ||
  builtins.has(spec.split("/")[0]!) ||
  spec === "child_process" ||
  spec === "net";

const TIME_APIS: [string, RegExp][] = [
  ["Date.now", /\bDate\.now\b/],
  ["new Date()", /\bnew\s+Date\s*\(\s*\)/],
  ["setTimeout", /\bsetTimeout\b/],
  ["setInterval", /\bsetInterval\b/],
  ["performance.now", /\bperformance\.now\b/],
];

function violations(src: string): string[] {
  const code = stripComments(src);
  return [
    ...importsOf(src)
      .filter(isForbiddenModule)
      .map((m) => `imports ${m}`),
    ...TIME_APIS.filter(([, re]) => re.test(code)).map(([name]) => `uses ${name}`),
  ];
}

const files = readdirSync(STATECHARTS)
  .filter((f) => f.endsWith(".ts"))
  .map((f) => join(STATECHARTS, f))
  .sort();

/** A statechart file and every local module it reaches through relative imports. */
function closure(entry: string, seen = new Set<string>()): Set<string> {
  if (seen.has(entry)) return seen;
  seen.add(entry);
  for (const spec of importsOf(readFileSync(entry, "utf8"))) {
    if (!spec.startsWith(".")) continue;
    const base = resolve(dirname(entry), spec);
    const target = [`${base}.ts`, join(base, "index.ts"), base].find((p) => {
      try {
        readFileSync(p);
        return true;
      } catch {
        return false;
      }
    });
    expect(target, `${relative(ROOT, entry)} imports ${spec}, which does not resolve`).toBeDefined();
    closure(target!, seen);
  }
  return seen;
}

describe("the checker itself", () => {
  it("finds forbidden imports in every form", () => {
    const src = [
      'import { connect } from "@nats-io/transport-node";',
      'import type { Socket } from "net";',
      'export { spawn } from "node:child_process";',
      'const cp = require("child_process");',
      'const fs = await import("fs");',
      'import "node:timers";',
    ].join("\n");
    expect(violations(src)).toEqual([
      "imports @nats-io/transport-node",
      "imports net",
      "imports node:child_process",
      "imports node:timers",
      "imports fs",
      "imports child_process",
    ]);
  });

  it("finds clock and timer use", () => {
    expect(violations("const t = Date.now();\nsetTimeout(f, 1);\nperformance.now();\nnew Date();")).toEqual([
      "uses Date.now",
      "uses new Date()",
      "uses setTimeout",
      "uses performance.now",
    ]);
  });

  it("ignores comments and allowed imports", () => {
    const src =
      '// no Date.now() here\n/* setTimeout */\nimport { setup } from "xstate";\nimport { x } from "../shared/gateway";';
    expect(violations(src)).toEqual([]);
  });
});

describe("statecharts/ purity", () => {
  it("scans every statechart source", () => {
    expect(files.map((f) => relative(STATECHARTS, f))).toEqual(
      expect.arrayContaining(["coordinator.ts", "domain.ts", "election.ts", "gateway.ts", "index.ts", "node.ts"]),
    );
  });

  it.each(files.map((f) => [relative(ROOT, f), f]))(
    "%s imports no NATS or Node module and reads no clock",
    (_name, file) => {
      expect(violations(readFileSync(file, "utf8"))).toEqual([]);
    },
  );

  it("pulls in no NATS or Node module through its relative imports", () => {
    const reached = new Set<string>();
    for (const f of files) for (const dep of closure(f)) reached.add(dep);
    expect([...reached].some((p) => p.includes(`${join(ROOT, "shared")}`))).toBe(true);
    const bad = [...reached].flatMap((p) =>
      importsOf(readFileSync(p, "utf8"))
        .filter(isForbiddenModule)
        .map((m) => `${relative(ROOT, p)} imports ${m}`),
    );
    expect(bad).toEqual([]);
  });
});
