// The fleet launcher's options (fleet.ts): one immutable object, every field optional but runDir.
import type { TunnelDriverName } from "../../lib/vpn";
import type { Timings } from "../../shared/config";
import type { ProcEvent } from "./procs";

export type FleetOptions = Readonly<{
  runDir: string;
  /** Hub client port; 0 picks free ports for everything (tests). */
  hubPort?: number;
  timings?: Partial<Timings>;
  coordinators?: number;
  /** Delay before a dead actor process is restarted; undefined disables restarts. */
  restartDelayMs?: number;
  /** Leave the hub's JetStream store from an earlier run in place (default: start empty). */
  keepState?: boolean;
  logLevel?: string;
  progress?: (line: string) => void;
  onProcEvent?: (e: ProcEvent) => void;
  /** Proxy mode: PKI, cloud front doors, edge channels, and a demo target server (kubelet stand-in) per node. */
  proxy?: boolean;
  /** Put every domain in its own network namespace (root only), so InternalIPs really collide. Implies proxy. */
  netns?: boolean;
  /** Channel transport between gateways (default "tls"). */
  proxyTransport?: "tls" | "tcp";
  /** The forward proxy's deadline for a target's response head (default: the gateway's, 30 s). */
  proxyResponseTimeoutMs?: number;
  /** In proxy mode, run the demo target server (kubelet stand-in) on every node (default true). */
  demoTargets?: boolean;
  /** The demo targets close keep-alive connections idle this long, unannounced (default: Node's 5 s). */
  demoTargetIdleMs?: number;
  /**
   * Tunnel mode (root): every node gets a host-network namespace and a pod namespace (netns-hosts.ts), node
   * actors keep VXLAN and routes there, gateway candidates run the VPN driver. Implies netns.
   */
  tunnel?: boolean;
  /** The VPN between gateways in tunnel mode (default "strongswan"). */
  tunnelDriver?: TunnelDriverName;
  /**
   * Kubernetes as the source of truth: the topology is written to this cluster (Nodes, NodePools, Gateways,
   * raven-cfg) and the coordinators run with --kubeconfig, mirroring it into KV and writing status back.
   */
  kubeconfig?: string;
  /** Who writes the topology into the cluster (default: kubeconfig); the coordinators may not create Nodes. */
  kubeAdminConfig?: string;
}>;
