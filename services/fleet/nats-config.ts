// nats-server configs for a fleet run. The hub's config includes the repository's nats.conf (the real hub
// configuration) and overrides only what a run must own: ports and the JetStream store directory. Each edge
// domain gets a leaf that dials out to the hub and retries every second (the fastest 2.9 allows).
import { relative } from "node:path";

export type HubPorts = Readonly<{ client: number; leafnode: number }>;

/** nats-server resolves `include` relative to the including file and refuses absolute paths. */
export function hubConfig(opts: { configDir: string; baseConf: string; ports: HubPorts; storeDir: string }): string {
  return [
    `include "${relative(opts.configDir, opts.baseConf)}"`,
    `server_name: raven-hub`,
    `listen: 127.0.0.1:${opts.ports.client}`,
    `jetstream { domain: hub, store_dir: ${JSON.stringify(opts.storeDir)}, max_memory_store: 256MB, max_file_store: 4GB }`,
    `leafnodes { listen: 127.0.0.1:${opts.ports.leafnode} }`,
    "",
  ].join("\n");
}

/** `host` is where the domain's actors reach their leaf: loopback, or the underlay bridge address when the
 * domain lives in its own network namespace. */
export function leafConfig(opts: { domain: string; port: number; hubLeafnodePort: number; host?: string }): string {
  return [
    `# Leaf server of edge domain ${opts.domain}: its actors connect here only; it dials out to the hub.`,
    `server_name: raven-leaf-${opts.domain}`,
    `listen: ${opts.host ?? "127.0.0.1"}:${opts.port}`,
    `ping_interval: "5s"`,
    `ping_max: 2`,
    `leafnodes {`,
    `  reconnect: 1`,
    `  remotes: [ { url: "nats-leaf://127.0.0.1:${opts.hubLeafnodePort}" } ]`,
    `}`,
    "",
  ].join("\n");
}
