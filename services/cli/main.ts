// `raven`: the operator's command line. Talks to the hub: status from the active coordinator, Gateway records
// from KV. Every failure is one clear line (mesh down, no coordinator, bad file) and a non-zero exit.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseFlags } from "../../shared/args";
import { ConfigError, TopologyError, describeError } from "../../shared/errors";
import { activeProxyAddress } from "../../shared/gateway";
import { parseGatewayManifest } from "../../shared/gateway-manifest";
import { applyGateway, checkApplicable, deleteGateway, listGateways } from "../../shared/gateway-store";
import { bindBuckets, connectDaemon, connectOnce, requestStatus, type NatsConnection } from "../../shared/nats";
import { onShutdown, runMain } from "../../shared/process";
import { isDomainName, subjects, tryDecode, type GatewayTunnel } from "../../shared/protocol";
import {
  DIAGRAM_FORMATS,
  EXTENSION,
  MACHINES,
  diagramsReadme,
  render,
  type DiagramFormat,
  type MachineName,
  startUiServer,
} from "../ui";
import { renderStatus, renderTunnels } from "../../shared/status-text";
import { hostsFile } from "./hosts";
import { makeSecrets } from "./secrets";
import { gatewaysJson, gatewaysYaml, readManifests } from "./manifests";
import { isIP } from "node:net";

const HELP = `usage: raven <command> [options]

Commands:
  status [--domain D] [-o table|json]   domains, active endpoints, term and term changes in the last minute,
                                        candidates' health, tunnels and last heartbeat, nodes (asks the
                                        active coordinator)
  gateways [-o yaml|json]               print the Gateway records (raven.openyurt.io/v1beta1, as OpenYurt's
                                        CRD has them); what it prints applies back unchanged
  gateways apply -f FILE                create or update Gateways from YAML or JSON (one object, a List, or
                                        --- separated documents; v1alpha1 is converted), checked as
                                        OpenYurt's webhooks check them; the coordinator elects at once
  gateways delete NAME                  delete a Gateway; its nodes fall back to solo or another Gateway
  statecharts export --format mermaid|dot|svg [--out DIR]
                                        every machine's diagram, drawn from the code (stdout, or one
                                        file per machine plus a Mermaid README in DIR)
  hosts [--address IP]                  hosts file mapping every edge node name to the proxy (DNS mode,
                                        OpenYurt's edge-tunnel-nodes); default address: the active cloud
                                        proxy endpoint's publicIP
  secrets --dir DIR --domains A,B       the credentials deploy/ mounts (fleet CA, proxy certificate, edge
                                        domains' tokens, tunnel PSK), and the kubectl commands for them
  ui [--port 8080] [--host 127.0.0.1]   the live statechart debugger: topology, statecharts, event logs,
                                        timeline, in a browser (served by Raven itself, works offline)

Options:
  --nats URL     hub NATS URL (default: $RAVEN_NATS or nats://127.0.0.1:4222)
  -h, --help     this help
`;

/** The newest gw.tunnel report of every gateway candidate heard within `waitMs`. */
async function collectTunnelReports(nc: NatsConnection, waitMs: number, domain?: string): Promise<GatewayTunnel[]> {
  const latest = new Map<string, GatewayTunnel>();
  const sub = nc.subscribe(domain ? subjects.domainGatewayTunnels(domain) : subjects.allGatewayTunnel());
  const timer = setTimeout(() => sub.unsubscribe(), waitMs);
  for await (const m of sub) {
    const msg = tryDecode(m.data, () => undefined);
    if (msg?.type === "gw.tunnel") latest.set(msg.body.node, msg.body);
  }
  clearTimeout(timer);
  return [...latest.values()];
}

async function withMesh<T>(url: string, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectOnce(url, "raven-cli");
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

runMain(async () => {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === "-h" || command === "--help" || command === "help") {
    process.stdout.write(HELP);
    return;
  }
  const natsDefault = process.env.RAVEN_NATS ?? "nats://127.0.0.1:4222";
  switch (command) {
    case "status": {
      const parsed = parseFlags(
        rest,
        "raven status [--domain D] [-o table|json]",
        "Fleet status from the active coordinator.",
        {
          nats: { type: "string", default: natsDefault, help: "hub NATS URL" },
          domain: { type: "string", help: "only this domain" },
          output: { type: "string", short: "o", default: "table", help: "table or json" },
          "tunnel-wait-ms": {
            type: "string",
            default: "1100",
            help: "how long to listen for the gateways' tunnel reports (they come every second); 0 = skip tunnels",
          },
        },
      );
      if (!parsed) return;
      const { flags } = parsed;
      if (flags.output !== "table" && flags.output !== "json")
        throw new ConfigError("--output", `must be table or json, got ${flags.output}`);
      if (flags.domain !== undefined && !isDomainName(flags.domain))
        throw new ConfigError("--domain", `${JSON.stringify(flags.domain)} is not a domain name (DNS label)`);
      const waitMs = Number(flags["tunnel-wait-ms"]);
      if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > 60_000)
        throw new ConfigError(
          "--tunnel-wait-ms",
          `${JSON.stringify(flags["tunnel-wait-ms"])} must be an integer 0..60000`,
        );
      const { st, tunnels } = await withMesh(flags.nats!, async (nc) => {
        const reports = waitMs > 0 ? collectTunnelReports(nc, waitMs, flags.domain) : Promise.resolve([]);
        const st = await requestStatus(nc, flags.domain ? { domain: flags.domain } : {});
        return { st, tunnels: await reports };
      });
      if (flags.domain && st.domains.length === 0)
        throw new ConfigError("--domain", `no domain ${flags.domain} in this fleet`);
      const text =
        flags.output === "json"
          ? JSON.stringify({ ...st, tunnels }, null, 2)
          : `${renderStatus(st)}\n\ntunnels\n${renderTunnels(tunnels, st)}`;
      process.stdout.write(text + "\n");
      return;
    }
    case "gateways": {
      const sub = rest[0] === "apply" || rest[0] === "delete" ? rest[0] : null;
      const parsed = parseFlags(
        sub ? rest.slice(1) : rest,
        sub === "apply"
          ? "raven gateways apply -f FILE"
          : sub === "delete"
            ? "raven gateways delete NAME"
            : "raven gateways [-o yaml|json]",
        sub === "apply"
          ? "Creates or updates Gateway records from a YAML or JSON manifest (raven.openyurt.io/v1beta1 or v1alpha1): one object, a List, or --- separated documents. Every object is checked before any is applied."
          : sub === "delete"
            ? "Deletes a Gateway record; its nodes fall back to solo or to another Gateway. Solo records are the coordinator's."
            : "Prints the Gateway records in the hub's KV; the output applies back unchanged.",
        {
          nats: { type: "string", default: natsDefault, help: "hub NATS URL" },
          ...(sub === null
            ? { output: { type: "string" as const, short: "o", default: "yaml", help: "yaml or json" } }
            : {}),
          ...(sub === "apply"
            ? { file: { type: "string" as const, short: "f", help: "YAML or JSON file with Gateways" } }
            : {}),
        },
        sub === "delete",
      );
      if (!parsed) return;
      const { flags, positionals } = parsed;
      if (sub === "apply") {
        if (!flags.file) throw new ConfigError("-f", "a file is required");
        let bytes: Buffer;
        try {
          bytes = readFileSync(flags.file);
        } catch (err) {
          throw new ConfigError("-f", `cannot read ${flags.file}: ${describeError(err)}`);
        }
        // Every object is checked before any is applied: a bad one leaves the records as they were.
        const list = readManifests(bytes, flags.file).map((o) => {
          try {
            return parseGatewayManifest(o.raw, o.where);
          } catch (err) {
            throw err instanceof TopologyError ? new ConfigError("-f", `${o.where}: ${err.message}`) : err;
          }
        });
        const names = new Set<string>();
        for (const gw of list) {
          if (names.has(gw.metadata.name))
            throw new ConfigError("-f", `${flags.file} defines gateway ${gw.metadata.name} twice`);
          names.add(gw.metadata.name);
        }
        await withMesh(flags.nats!, async (nc) => {
          const buckets = await bindBuckets(nc);
          for (const gw of list) await checkApplicable(buckets.gateways, gw);
          for (const gw of list)
            process.stdout.write(`gateway ${gw.metadata.name} ${await applyGateway(buckets.gateways, gw)}\n`);
        });
        return;
      }
      if (sub === "delete") {
        const name = positionals[0];
        if (!name || positionals.length > 1)
          throw new ConfigError("delete", "name exactly one Gateway: raven gateways delete NAME");
        await withMesh(flags.nats!, async (nc) => deleteGateway((await bindBuckets(nc)).gateways, name));
        process.stdout.write(`gateway ${name} deleted\n`);
        return;
      }
      if (flags.output !== "yaml" && flags.output !== "json")
        throw new ConfigError("--output", `must be yaml or json, got ${flags.output}`);
      const gws = await withMesh(flags.nats!, async (nc) => {
        const buckets = await bindBuckets(nc);
        return listGateways(buckets.gateways, (key, err) =>
          process.stderr.write(`warning: skipping record ${key}: ${describeError(err)}\n`),
        );
      });
      process.stdout.write(flags.output === "json" ? gatewaysJson(gws) : gatewaysYaml(gws));
      return;
    }
    case "statecharts": {
      if (rest[0] !== "export")
        throw new ConfigError("statecharts", `the subcommand is export, got ${JSON.stringify(rest[0] ?? "")}`);
      const parsed = parseFlags(
        rest.slice(1),
        "raven statecharts export --format mermaid|dot|svg [--out DIR]",
        "Diagrams of every machine, drawn from the definitions in statecharts/.",
        {
          format: { type: "string", default: "mermaid", help: "mermaid, dot or svg (laid out with elkjs)" },
          out: {
            type: "string",
            help: "directory to write <machine>.<mmd|dot|svg> and README.md into (default: stdout)",
          },
        },
      );
      if (!parsed) return;
      const format = parsed.flags.format as DiagramFormat;
      if (!DIAGRAM_FORMATS.includes(format))
        throw new ConfigError("--format", `must be ${DIAGRAM_FORMATS.join(" or ")}, got ${parsed.flags.format}`);
      const names = Object.keys(MACHINES) as MachineName[];
      if (!parsed.flags.out) {
        process.stdout.write((await Promise.all(names.map((n) => render(n, format)))).join("\n"));
        return;
      }
      mkdirSync(parsed.flags.out, { recursive: true });
      for (const n of names)
        writeFileSync(join(parsed.flags.out, `${n}.${EXTENSION[format]}`), await render(n, format));
      writeFileSync(join(parsed.flags.out, "README.md"), diagramsReadme());
      process.stdout.write(`wrote ${names.length} ${format} diagrams and README.md to ${parsed.flags.out}\n`);
      return;
    }
    case "hosts": {
      const parsed = parseFlags(
        rest,
        "raven hosts [--address IP]",
        "Hosts file for DNS mode: every edge node name -> the proxy.",
        {
          nats: { type: "string", default: natsDefault, help: "hub NATS URL" },
          address: {
            type: "string",
            help: "the proxy address to map names to (default: the active cloud proxy endpoint's publicIP)",
          },
        },
      );
      if (!parsed) return;
      const records = await withMesh(parsed.flags.nats!, async (nc) => listGateways((await bindBuckets(nc)).gateways));
      const address = parsed.flags.address ?? activeProxyAddress(records);
      if (!address)
        throw new ConfigError(
          "--address",
          "no active cloud proxy endpoint with a publicIP in the Gateway records; pass --address",
        );
      if (!isIP(address)) throw new ConfigError("--address", `${JSON.stringify(address)} is not an IP address`);
      process.stdout.write(hostsFile(records, address));
      return;
    }
    case "secrets": {
      const parsed = parseFlags(
        rest,
        "raven secrets --dir DIR --domains A,B,...",
        "Makes (or reuses) the credentials a Kubernetes deployment mounts and prints the kubectl commands that store them as Secrets in kube-system.",
        {
          dir: { type: "string", help: "where to keep them (mode 0700; keep it, a second run reuses it)" },
          domains: { type: "string", help: "the edge domains (node pools) that get a proxy token, comma-separated" },
        },
      );
      if (!parsed) return;
      const dir = parsed.flags.dir;
      if (!dir) throw new ConfigError("--dir", "is required: the directory to keep the credentials in");
      const domains = (parsed.flags.domains ?? "").split(",").filter((d) => d !== "");
      if (domains.length === 0) throw new ConfigError("--domains", "name at least one edge domain (node pool)");
      for (const d of domains)
        if (!isDomainName(d)) throw new ConfigError("--domains", `${JSON.stringify(d)} is not a DNS label`);
      const plan = await makeSecrets(dir, domains);
      process.stdout.write(
        `credentials in ${plan.dir} (keys, the secret, tokens and the PSK are 0600; none is printed).\nStore them in the cluster:\n${plan.commands.map((c) => `  ${c}`).join("\n")}\n`,
      );
      return;
    }
    case "ui": {
      const parsed = parseFlags(
        rest,
        "raven ui [--port 8080] [--host 127.0.0.1] [--nats URL]",
        "The live statechart debugger: watch every actor of the fleet in a browser (no CDN, works offline).",
        {
          nats: { type: "string", default: natsDefault, help: "hub NATS URL" },
          port: { type: "string", default: "8080", help: "HTTP port (0 picks a free one)" },
          host: { type: "string", default: "127.0.0.1", help: "address to listen on (0.0.0.0 for every interface)" },
        },
      );
      if (!parsed) return;
      const port = Number(parsed.flags.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new ConfigError("--port", `${parsed.flags.port} is not a port`);
      await (await connectOnce(parsed.flags.nats!, "raven-ui-probe")).close(); // a clear error when the mesh is not there
      const nc = await connectDaemon(parsed.flags.nats!, "raven-ui");
      const ui = await startUiServer({ nc, port, host: parsed.flags.host! });
      process.stdout.write(`raven ui: open ${ui.url} (fleet at ${parsed.flags.nats}); Ctrl-C stops\n`);
      onShutdown(async () => {
        await ui.close();
        await nc.close();
      });
      await new Promise(() => {}); // serves until signalled
      return;
    }
    default:
      throw new ConfigError("command", `unknown command ${JSON.stringify(command)}\n\n${HELP}`);
  }
});
