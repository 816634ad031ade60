// `raven hosts`: the hosts file of Raven's DNS mode (OpenYurt's edge-tunnel-nodes ConfigMap): every edge
// node's name -> the address of the proxy's name-routed listeners, so that the kube-apiserver (or anything in
// the cloud) reaching `nodeName:10250` lands on the cloud gateway, which routes by SNI/Host. Nodes of the
// exposed (cloud) Gateways are left out: the cloud reaches them directly.
import { isSolo, type Gateway } from "../../shared/gateway";

export function hostsFile(records: readonly Gateway[], address: string): string {
  const names = new Set<string>();
  for (const gw of records) {
    if (gw.spec.exposeType !== "") continue;
    if (isSolo(gw)) names.add(gw.metadata.name);
    for (const n of gw.status.nodes) names.add(n.nodeName);
  }
  const lines = [...names].sort().map((n) => `${address} ${n}`);
  return [`# Raven edge nodes -> proxy ${address} (raven hosts; ${names.size} nodes)`, ...lines, ""].join("\n");
}
