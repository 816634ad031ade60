// The command lines the fleet launcher gives its actor processes (node actors, gateway candidates), from the
// topology and what the launcher set up for them (namespaces, PKI, the tunnel PSK, proxy listeners). Pure.
import type { NodeFacts } from "../../shared/domains";
import type { TunnelDriverName } from "../../lib/vpn";
import { DEMO_TLS_PORTS, type ProxyListen } from "./dataplane";

export type NodeActorSetup = Readonly<{
  natsUrl: string;
  /** Tunnel mode: the node's host-network namespace and the VPN driver (for the MTU overhead). */
  tunnel?: Readonly<{ netns: string; driver: TunnelDriverName }>;
  /** The demo's kubelet stand-in: the node's ports (DEMO_TLS_PORTS among them over TLS) and its certificate. */
  demoTarget?: Readonly<{ ports: readonly number[]; tlsDir: string; idleTimeoutMs?: number }>;
}>;

export function nodeActorArgs(n: NodeFacts, o: NodeActorSetup): string[] {
  const args = [
    "--nats",
    o.natsUrl,
    "--node",
    n.name,
    "--labels",
    JSON.stringify(n.labels),
    "--internal-ip",
    n.internalIP,
  ];
  if (n.podCIDR) args.push("--pod-cidr", n.podCIDR);
  if (o.tunnel) args.push("--tunnel", "--tunnel-netns", o.tunnel.netns, "--tunnel-driver", o.tunnel.driver);
  if (o.demoTarget) {
    const tls = o.demoTarget.ports.filter((p) => DEMO_TLS_PORTS.includes(p));
    const plain = o.demoTarget.ports.filter((p) => !tls.includes(p));
    args.push("--target-http-ports", plain.join(","), "--target-https-ports", tls.join(","));
    args.push("--target-tls-dir", o.demoTarget.tlsDir);
    if (o.demoTarget.idleTimeoutMs !== undefined) args.push("--target-idle-ms", `${o.demoTarget.idleTimeoutMs}`);
  }
  return args;
}

export type GatewayActorSetup = Readonly<{
  natsUrl: string;
  proxy?: Readonly<{ pkiDir: string; transport: string; responseTimeoutMs?: number }>;
  tunnel?: Readonly<{ driver: TunnelDriverName; pskFile: string; stateDir: string; netns: string }>;
  /** A cloud candidate's proxy listeners. */
  listen?: ProxyListen;
}>;

export function gatewayActorArgs(node: string, domain: string, gateway: string, o: GatewayActorSetup): string[] {
  const args = ["--nats", o.natsUrl, "--node", node, "--domain", domain, "--gateway", gateway];
  if (o.proxy) args.push("--proxy-pki", o.proxy.pkiDir, "--proxy-transport", o.proxy.transport);
  if (o.proxy?.responseTimeoutMs !== undefined)
    args.push("--proxy-response-timeout-ms", `${o.proxy.responseTimeoutMs}`);
  if (o.tunnel) {
    const t = o.tunnel;
    args.push("--tunnel", "--tunnel-driver", t.driver, "--tunnel-psk", t.pskFile, "--tunnel-state-dir", t.stateDir);
    args.push("--tunnel-netns", t.netns);
  }
  if (o.listen) {
    const l = o.listen;
    const names = [...l.namePorts].map(([target, port]) => (target === port ? `${target}` : `${target}=${port}`));
    args.push("--proxy-bind", l.host, "--proxy-port", `${l.dataPort}`, "--proxy-front-port", `${l.frontPort}`);
    args.push("--proxy-name-ports", names.join(","));
  }
  return args;
}
