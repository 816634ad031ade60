// Bundles the actor entrypoints with esbuild so that the fleet starts ~30 Node processes quickly (a bundle
// starts in a fraction of the time tsx needs to compile on every start). Dependencies stay external and
// resolve from the repository's node_modules; the output lives in <repo>/.raven/build (git-ignored).
import { build, stop } from "esbuild";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export const ENTRYPOINTS = {
  coordinator: "services/coordinator/main.ts",
  "gateway-actor": "services/gateway-actor/main.ts",
  "node-actor": "services/node-actor/main.ts",
  // The gateway's proxy thread, loaded by the gateway-actor bundle from next to it.
  "proxy-worker": "services/gateway-actor/proxy/worker.ts",
} as const;
export type Entrypoint = keyof typeof ENTRYPOINTS;

/** Builds every entrypoint; returns the path of each bundle. */
export async function buildEntrypoints(
  outDir = join(REPO_ROOT, ".raven", "build"),
): Promise<Record<Entrypoint, string>> {
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: Object.fromEntries(Object.entries(ENTRYPOINTS).map(([name, file]) => [name, join(REPO_ROOT, file)])),
    outdir: outDir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "inline",
    logLevel: "error",
  });
  // esbuild's service process would otherwise stay for the launcher's whole life, waking to ping it (0.1 % of
  // a core, for nothing); a later build starts it again.
  await stop();
  return Object.fromEntries(Object.keys(ENTRYPOINTS).map((name) => [name, join(outDir, `${name}.mjs`)])) as Record<
    Entrypoint,
    string
  >;
}
