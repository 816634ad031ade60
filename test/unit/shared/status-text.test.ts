import { describe, expect, it } from "vitest";
import type { CandidateStatus, DomainStatus, StatusReply } from "../../../shared/protocol";
import { renderStatus, table } from "../../../shared/status-text";

describe("table", () => {
  it("pads every column but the last to its widest cell, two spaces apart", () => {
    expect(
      table(
        ["NAME", "IP"],
        [
          ["a", "10.0.0.1"],
          ["long-name", "x"],
        ],
      ),
    ).toBe(["NAME       IP", "a          10.0.0.1", "long-name  x"].join("\n"));
  });

  it("indents every line and trims trailing blanks of empty last cells", () => {
    expect(
      table(
        ["A", "BB", "C"],
        [
          ["xxx", "y", ""],
          ["z", "", "w"],
        ],
        "  ",
      ),
    ).toBe(["  A    BB  C", "  xxx  y", "  z        w"].join("\n"));
  });

  it("prints just the header for no rows", () => {
    expect(table(["DOMAIN", "TERM"], [])).toBe("DOMAIN  TERM");
  });
});

const candidate = (node: string, patch: Partial<CandidateStatus> = {}): CandidateStatus => ({
  node,
  types: ["proxy", "tunnel"],
  healthy: true,
  draining: false,
  datapathOk: true,
  actingActive: [],
  lastHeartbeatAgeMs: 40,
  ...patch,
});

const status = (): StatusReply => ({
  coordinator: "coordinator-0",
  activeSince: 1_767_225_600_000,
  truncated: false,
  domains: [
    {
      domain: "factory-a",
      gateway: "gw-factory-a",
      solo: false,
      term: 3,
      termChangesLastMinute: 12,
      replicas: { proxy: 1, tunnel: 1 },
      active: [
        { nodeName: "factory-a-gw-1", type: "proxy" },
        { nodeName: "factory-a-gw-1", type: "tunnel" },
      ],
      candidates: [
        candidate("factory-a-gw-1", { actingActive: ["proxy", "tunnel"] }),
        candidate("factory-a-gw-2", { healthy: false, datapathOk: false, lastHeartbeatAgeMs: 12_400 }),
      ],
      nodes: [{ node: "factory-a-node-1", internalIP: "192.168.1.13", ready: true, lastHeartbeatAgeMs: 900 }],
    },
    {
      domain: "kiosk",
      gateway: "kiosk-1",
      solo: true,
      term: 1,
      termChangesLastMinute: 0,
      replicas: { proxy: 1, tunnel: 1 },
      active: [],
      candidates: [candidate("kiosk-1", { types: [], healthy: false, datapathOk: false, lastHeartbeatAgeMs: null })],
      nodes: [{ node: "kiosk-1", internalIP: "", ready: false, lastHeartbeatAgeMs: null }],
      problem: "no healthy candidate",
    },
  ],
});

describe("renderStatus", () => {
  it("renders the summary and each domain's candidates and nodes", () => {
    expect(renderStatus(status()).split("\n")).toEqual([
      "coordinator coordinator-0 (active since 2026-01-01T00:00:00.000Z)",
      "",
      "DOMAIN     GATEWAY         TERM  TERMS/1m  REPLICAS          ACTIVE                        PROBLEM",
      "factory-a  gw-factory-a    3     12        proxy=1 tunnel=1  factory-a-gw-1(proxy,tunnel)",
      "kiosk      kiosk-1 (solo)  1     0         proxy=1 tunnel=1  -                             no healthy candidate",
      "",
      "factory-a / gw-factory-a  term 3",
      "  CANDIDATE       TYPES         HEALTH         ACTING        LAST HEARTBEAT",
      "  factory-a-gw-1  proxy,tunnel  healthy        proxy,tunnel  40ms",
      "  factory-a-gw-2  proxy,tunnel  datapath-down  standby       12s",
      "  NODE              INTERNAL-IP   READY  LAST HEARTBEAT",
      "  factory-a-node-1  192.168.1.13  yes    900ms",
      "",
      "kiosk / kiosk-1  term 1",
      "  CANDIDATE  TYPES  HEALTH     ACTING   LAST HEARTBEAT",
      "  kiosk-1    -      unhealthy  standby  never",
      "  NODE     INTERNAL-IP  READY  LAST HEARTBEAT",
      "  kiosk-1  -            no     never",
    ]);
  });

  it("groups active endpoints by node, in order of first appearance", () => {
    const st = status();
    const d = st.domains[0]!;
    d.active = [
      { nodeName: "gw-2", type: "tunnel" },
      { nodeName: "gw-1", type: "proxy" },
      { nodeName: "gw-2", type: "proxy" },
    ];
    expect(renderStatus(st).split("\n")[3]).toContain("gw-2(tunnel,proxy) gw-1(proxy)");
  });

  it("labels draining and silent candidates, and switches from ms to s at 10 s", () => {
    const st = status();
    const d: DomainStatus = st.domains[0]!;
    d.candidates = [
      candidate("c-drain", { healthy: false, draining: true, lastHeartbeatAgeMs: 9_999 }),
      candidate("c-silent", { healthy: false, datapathOk: true, lastHeartbeatAgeMs: 10_000 }),
      candidate("c-old", { healthy: false, datapathOk: false, lastHeartbeatAgeMs: 10_500 }),
    ];
    const lines = renderStatus(st).split("\n");
    expect(lines).toContain("  c-drain    proxy,tunnel  draining       standby  9999ms");
    expect(lines).toContain("  c-silent   proxy,tunnel  unhealthy      standby  10s");
    expect(lines).toContain("  c-old      proxy,tunnel  datapath-down  standby  11s");
  });

  it("shows term changes in the last minute, and '-' for an older coordinator that does not count them", () => {
    const st = status();
    delete st.domains[0]!.termChangesLastMinute;
    st.domains[1]!.termChangesLastMinute = 1_000;
    expect(renderStatus(st).split("\n").slice(2, 5)).toEqual([
      "DOMAIN     GATEWAY         TERM  TERMS/1m  REPLICAS          ACTIVE                        PROBLEM",
      "factory-a  gw-factory-a    3     -         proxy=1 tunnel=1  factory-a-gw-1(proxy,tunnel)",
      "kiosk      kiosk-1 (solo)  1     1000      proxy=1 tunnel=1  -                             no healthy candidate",
    ]);
  });

  it("notes a truncated reply", () => {
    const st = { ...status(), truncated: true };
    expect(renderStatus(st).endsWith("\n\n(truncated: ask for one domain with --domain)")).toBe(true);
    expect(renderStatus(status())).not.toContain("truncated");
  });

  it("renders a coordinator with no domains", () => {
    const st: StatusReply = { coordinator: "c", activeSince: 0, truncated: false, domains: [] };
    expect(renderStatus(st)).toBe(
      "coordinator c (active since 1970-01-01T00:00:00.000Z)\n\nDOMAIN  GATEWAY  TERM  TERMS/1m  REPLICAS  ACTIVE  PROBLEM",
    );
  });
});
