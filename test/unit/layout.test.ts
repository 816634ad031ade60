// The layout's import rules, checked on every source file (the lint for restricted imports; README "Layout"):
// shared/ imports nothing of ours; statecharts/ nothing but shared/; lib/ nothing but shared/ and other lib/
// folders' indexes; services/ reach lib/ and other services only through an index.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const SPEC = /(?:from\s*|import\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g;

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return name === "static" ? [] : sources(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

/** Every relative import of `file`, as the repository path it names (without extension). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  return [...text.matchAll(SPEC)].map((m) => normalize(join(dirname(file), m[1]!)).replace(/\.ts$/, ""));
}

const top = (path: string) => path.split("/")[0]!;
/** `lib/vpn` for lib/vpn/strongswan, `services/ui` for services/ui/server: the folder that has the index. */
const unit = (path: string) => path.split("/").slice(0, 2).join("/");
const viaIndex = (target: string) => target === unit(target) || target === `${unit(target)}/index`;

function violations(dir: string, rule: (file: string, target: string) => string | null): string[] {
  return sources(dir).flatMap((file) =>
    importsOf(file)
      .flatMap((t) => rule(file, t) ?? [])
      .map((why) => `${file}: ${why}`),
  );
}

describe("the layout's import rules", () => {
  it("shared/ imports nothing of ours", () => {
    expect(violations("shared", (_f, t) => (top(t) !== "shared" ? `imports ${t}` : null))).toEqual([]);
  });

  it("statecharts/ import nothing but shared/", () => {
    expect(
      violations("statecharts", (_f, t) => (!["statecharts", "shared"].includes(top(t)) ? `imports ${t}` : null)),
    ).toEqual([]);
  });

  it("lib/ imports shared/ and other lib/ folders through their index only", () => {
    const rule = (f: string, t: string) => {
      if (top(t) === "shared") return null;
      if (top(t) !== "lib") return `imports ${t}`;
      return unit(t) !== unit(f) && !viaIndex(t) ? `reaches past ${unit(t)}/index.ts to ${t}` : null;
    };
    expect(violations("lib", rule)).toEqual([]);
  });

  it("services/ reach lib/ and each other through an index only", () => {
    const rule = (f: string, t: string) => {
      if (top(t) === "lib" || (top(t) === "services" && unit(t) !== unit(f))) {
        return viaIndex(t) ? null : `reaches past ${unit(t)}/index.ts to ${t}`;
      }
      return null;
    };
    expect(violations("services", rule)).toEqual([]);
  });

  it("finds what it checks (a rule over no files proves nothing)", () => {
    expect(sources("lib").length).toBeGreaterThan(15);
    expect(importsOf("lib/vpn/wireguard.ts")).toContain("lib/vpn/wireguard-conf");
    expect(importsOf("services/cli/main.ts")).toContain("services/ui");
  });
});
