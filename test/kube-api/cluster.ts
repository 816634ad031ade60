// A Raven-ready cluster on the API double: the double started, the CRDs a Raven cluster has installed (the
// Gateway CRD exactly as deploy/ ships it, OpenYurt's NodePool CRD) and a kubeconfig written. Used by the
// integration tests and by `npm run fleet -- --kube`.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { startKubeApi, writeKubeconfig, type KubeApi, type KubeApiOptions } from "./server";

const HERE = dirname(fileURLToPath(import.meta.url));
export const CRD_FILES = [
  join(HERE, "../../deploy/gateway-crd.yaml"),
  join(HERE, "crds/nodepools.apps.openyurt.io.yaml"),
];

export type RavenCluster = { api: KubeApi; kubeconfig: string };

export async function startRavenCluster(dir: string, opts: KubeApiOptions = {}): Promise<RavenCluster> {
  const api = await startKubeApi(opts);
  try {
    for (const file of CRD_FILES) {
      const res = await fetch(`${api.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(parse(readFileSync(file, "utf8"))),
      });
      if (res.status !== 201) throw new Error(`installing ${file}: ${res.status} ${await res.text()}`);
    }
    return { api, kubeconfig: await writeKubeconfig(dir, api.url) };
  } catch (err) {
    await api.close();
    throw err;
  }
}
