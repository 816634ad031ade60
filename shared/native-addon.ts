// Loading Raven's Node-API addons (native/, built by scripts/build-native.sh): found in the repository this
// module runs from, whether from its source tree or from a bundle under .raven/build. A missing or unloadable
// addon is a MissingDependency error that says how to build it.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ErrorCode, RavenError } from "./errors";

/** Loads `file` (relative to the repository root, e.g. "native/build/raven_netns.node"); `what` names its purpose in errors. */
export function loadNativeAddon<T>(file: string, what: string): T {
  try {
    return createRequire(import.meta.url)(addonPath(file)) as T;
  } catch (err) {
    throw new RavenError(
      ErrorCode.MissingDependency,
      `${what} (${file}) cannot be loaded: run scripts/build-native.sh (setup does); ${(err as Error).message.split("\n")[0]}`,
    );
  }
}

function addonPath(file: string): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const p = join(dir, file);
    if (existsSync(p)) return p;
    if (dirname(dir) === dir) return file; // not found anywhere above: the require names it in its error
  }
}
