// The fleet's data plane setup for proxy mode: where each cloud gateway candidate listens (edge-facing data
// port, HTTP proxy front door, name-routed node ports), the Gateway records patched so that edges find the
// cloud endpoints (publicIP/port), per-domain PKI material, and the demo target servers on every node.
//   - With network namespaces (root): every candidate has its own underlay address, so the standard ports
//     (10262, 10264, 10250, 10255, 9100, 9445) are used as they would be on real nodes.
//   - Without: everything is on loopback, so ports are picked free and node InternalIPs must be loopback
//     addresses (127.x) the demo targets can bind.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TopologyError } from "../../shared/errors";
import { gatewayKey, proxyPortsOf, type Gateway } from "../../shared/gateway";
import { domainToken, type PkiFiles } from "../../shared/pki";
import { partitionOf, type Topology } from "../../shared/topology";

export type ProxyListen = Readonly<{
  host: string;
  dataPort: number;
  frontPort: number;
  namePorts: ReadonlyMap<number, number>;
}>;

/** Node ports the demo targets serve; 10250 (the kubelet's) speaks TLS, the rest plain HTTP. */
export const DEMO_TLS_PORTS: readonly number[] = [10250];

export type ProxyPlan = Readonly<{
  topology: Topology;
  /** Cloud candidate node -> where its proxy listens. */
  cloud: ReadonlyMap<string, ProxyListen>;
  exposed: ReadonlySet<string>;
}>;

/** Gateway names whose spec is exposed (cloud gateways). */
function exposedGateways(topology: Topology): Set<string> {
  return new Set(topology.gateways.filter((g) => g.spec.exposeType !== "").map((g) => g.metadata.name));
}

/**
 * Decides the cloud listeners and patches the cloud Gateways' proxy endpoints with their addresses.
 * `hostOf(node)` is the candidate's underlay address (namespaces) or 127.0.0.1; `ports(n)` returns n free
 * ports when listeners must not use the standard ones.
 */
export async function planProxy(
  topology: Topology,
  hostOf: (node: string) => string,
  ports: ((n: number) => Promise<number[]>) | null,
): Promise<ProxyPlan> {
  const exposed = exposedGateways(topology);
  const { units } = partitionOf(topology);
  const cloud = new Map<string, ProxyListen>();
  for (const gw of topology.gateways) {
    if (!exposed.has(gw.metadata.name)) continue;
    const unit = units.get(gatewayKey(gw.metadata.name));
    const nodePorts = proxyPortsOf(gw.spec);
    for (const c of unit?.candidates ?? []) {
      if (cloud.has(c)) continue;
      const host = hostOf(c);
      if (ports) {
        const [dataPort, frontPort, ...rest] = await ports(2 + nodePorts.length);
        cloud.set(c, {
          host,
          dataPort: dataPort!,
          frontPort: frontPort!,
          namePorts: new Map(nodePorts.map((p, i) => [p, rest[i]!])),
        });
      } else {
        cloud.set(c, { host, dataPort: 10262, frontPort: 10264, namePorts: new Map(nodePorts.map((p) => [p, p])) });
      }
    }
  }
  const gateways: Gateway[] = topology.gateways.map((gw) => {
    if (!exposed.has(gw.metadata.name)) return gw;
    const endpoints = gw.spec.endpoints.map((ep) => {
      const l = cloud.get(ep.nodeName);
      return ep.type === "proxy" && l ? { ...ep, publicIP: l.host, port: l.dataPort } : ep;
    });
    return { ...gw, spec: { ...gw.spec, endpoints } };
  });
  if (!ports) return { topology: { ...topology, gateways }, cloud, exposed };
  for (const n of topology.nodes) {
    if (!n.internalIP.startsWith("127.")) {
      throw new TopologyError(
        `node ${n.name}: proxy mode without network namespaces needs loopback InternalIPs (127.x) for the demo targets, got ${n.internalIP}; run as root to put domains in namespaces`,
      );
    }
  }
  return { topology: { ...topology, gateways }, cloud, exposed };
}

/** A directory per domain with only what its gateways may hold: the CA (to pin) and the domain's token;
 * the cloud domains' also get the proxy key, certificate and the fleet secret. */
export function writeDomainPki(
  pki: PkiFiles,
  secretHex: string,
  root: string,
  domain: string,
  cloud: boolean,
  read: (f: string) => Buffer,
): string {
  const dir = join(root, "domains", domain);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "ca.crt"), read(pki.caCert));
  writeFileSync(join(dir, "token"), domainToken(secretHex, domain), { mode: 0o600 });
  // The demo targets' TLS (kubelet port) is the node's own: every node of the domain gets it.
  writeFileSync(join(dir, "kubelet.crt"), read(pki.kubeletCert));
  writeFileSync(join(dir, "kubelet.key"), read(pki.kubeletKey), { mode: 0o600 });
  if (cloud) {
    writeFileSync(join(dir, "proxy.crt"), read(pki.proxyCert));
    writeFileSync(join(dir, "proxy.key"), read(pki.proxyKey), { mode: 0o600 });
    writeFileSync(join(dir, "secret"), secretHex, { mode: 0o600 });
  }
  return dir;
}
