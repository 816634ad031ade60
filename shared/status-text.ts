// Plain-text rendering of what the mesh reports, for the CLI and the fleet launcher: aligned tables, the status
// view and tunnel reports. (YAML is the `yaml` library's: services/cli/manifests.ts.)
import type { GatewayTunnel, StatusReply } from "./protocol";

export function table(header: string[], rows: string[][], indent = ""): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    indent +
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

const age = (ms: number | null) => (ms === null ? "never" : ms < 10_000 ? `${ms}ms` : `${Math.round(ms / 1000)}s`);

export function renderStatus(st: StatusReply): string {
  const out: string[] = [];
  out.push(`coordinator ${st.coordinator} (active since ${new Date(st.activeSince).toISOString()})`);
  out.push("");
  out.push(
    table(
      ["DOMAIN", "GATEWAY", "TERM", "TERMS/1m", "REPLICAS", "ACTIVE", "PROBLEM"],
      st.domains.map((d) => [
        d.domain,
        d.solo ? `${d.gateway} (solo)` : d.gateway,
        String(d.term),
        // Term changes in the last minute (flapping); "-" from an older coordinator that does not count them.
        d.termChangesLastMinute === undefined ? "-" : String(d.termChangesLastMinute),
        `proxy=${d.replicas.proxy} tunnel=${d.replicas.tunnel}`,
        d.active.length
          ? [...new Set(d.active.map((a) => a.nodeName))]
              .map(
                (n) =>
                  `${n}(${d.active
                    .filter((a) => a.nodeName === n)
                    .map((a) => a.type)
                    .join(",")})`,
              )
              .join(" ")
          : "-",
        d.problem ?? "",
      ]),
    ),
  );
  for (const d of st.domains) {
    out.push("");
    out.push(`${d.domain} / ${d.gateway}  term ${d.term}`);
    out.push(
      table(
        ["CANDIDATE", "TYPES", "HEALTH", "ACTING", "LAST HEARTBEAT"],
        d.candidates.map((c) => [
          c.node,
          c.types.join(",") || "-",
          c.healthy
            ? "healthy"
            : c.draining
              ? "draining"
              : !c.datapathOk && c.lastHeartbeatAgeMs !== null
                ? "datapath-down"
                : "unhealthy",
          c.actingActive.join(",") || "standby",
          age(c.lastHeartbeatAgeMs),
        ]),
        "  ",
      ),
    );
    out.push(
      table(
        ["NODE", "INTERNAL-IP", "READY", "LAST HEARTBEAT"],
        d.nodes.map((n) => [n.node, n.internalIP || "-", n.ready ? "yes" : "no", age(n.lastHeartbeatAgeMs)]),
        "  ",
      ),
    );
  }
  if (st.truncated) out.push("\n(truncated: ask for one domain with --domain)");
  return out.join("\n");
}

const bytes = (n: number | null) =>
  n === null
    ? "-"
    : n < 1024
      ? `${n}B`
      : n < 1024 ** 2
        ? `${(n / 1024).toFixed(1)}KiB`
        : n < 1024 ** 3
          ? `${(n / 1024 ** 2).toFixed(1)}MiB`
          : `${(n / 1024 ** 3).toFixed(2)}GiB`;

/**
 * Tunnel mode: one row per tunnel of every active tunnel endpoint that reported (gw.tunnel), plus the
 * domains tunnel mode refuses and gateways whose driver fails.
 */
export function renderTunnels(reports: readonly GatewayTunnel[], st: StatusReply | null): string {
  const out: string[] = [];
  const active = reports.filter((r) => r.active).sort((a, b) => a.domain.localeCompare(b.domain));
  const rows = active.flatMap((r) =>
    r.tunnels.map((t) => [
      r.domain,
      r.node,
      t.peer,
      t.peerNode ? `${t.peerNode} (term ${t.peerTerm})` : "-",
      r.driver,
      t.state,
      t.latencyUs === null ? "-" : `${(t.latencyUs / 1000).toFixed(2)}ms`,
      `${bytes(t.bytesIn)}/${bytes(t.bytesOut)}`,
      t.error ?? "",
    ]),
  );
  out.push(
    rows.length > 0
      ? table(
          ["DOMAIN", "GATEWAY", "PEER", "PEER GATEWAY", "DRIVER", "STATE", "LATENCY", "BYTES IN/OUT", "ERROR"],
          rows,
        )
      : "no tunnels reported (tunnel mode off, or no active tunnel endpoint yet)",
  );
  for (const r of reports) if (r.error) out.push(`gateway ${r.node} (${r.domain}): tunnel driver error: ${r.error}`);
  for (const d of st?.domains ?? [])
    if (d.tunnelProblem) out.push(`domain ${d.domain}: tunnel mode refused: ${d.tunnelProblem}`);
  return out.join("\n");
}
