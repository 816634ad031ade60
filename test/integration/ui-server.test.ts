// The `raven ui` server with a real HTTP client, against a real nats-server (no fleet): static assets served
// by Raven itself, statechart SVGs with one element per state, the recorded history, the live SSE stream,
// /metrics, and the viewer's presence announcements that make actor processes publish.
import { spawn, type ChildProcess } from "node:child_process";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectDaemon, type NatsConnection } from "../../shared/nats";
import { decodeAs, encode, subjects } from "../../shared/protocol";
import { freePorts, waitForPort } from "../../services/fleet/procs";
import { startUiServer, type UiServer } from "../../services/ui/server";

let server: ChildProcess;
let nc: NatsConnection;
let ui: UiServer;

beforeAll(async () => {
  const [port] = await freePorts(1);
  server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  await waitForPort(port!, 10_000);
  nc = await connectDaemon(`nats://127.0.0.1:${port}`, "ui-server-test");
  ui = await startUiServer({ nc, port: 0, presenceEveryMs: 100, statusEveryMs: 200 });
});

afterAll(async () => {
  await ui?.close();
  await nc?.close();
  server?.kill("SIGTERM");
});

async function get(path: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(new URL(path, ui.url));
  return { status: res.status, type: res.headers.get("content-type") ?? "", body: await res.text() };
}

const batch = (entries: { actor: string; state: string; term: number | null; event?: string }[]) =>
  encode("inspect.batch", {
    source: "gateway/a-gw-1",
    domain: "edge-a",
    seq: 1,
    dropped: 0,
    sync: false,
    entries: entries.map((e) => ({
      machine: "gateway",
      at: 1_700_000_000_000,
      event: e.event ?? "ASSIGNMENT",
      changed: true,
      ...e,
    })),
  });

describe("raven ui server", () => {
  it("serves the page and its assets itself, with no external reference", async () => {
    const page = await get("/");
    expect(page.status).toBe(200);
    expect(page.type).toContain("text/html");
    expect(page.body).toContain('src="/app.js"');
    for (const [path, type] of [
      ["/app.js", "javascript"],
      ["/style.css", "text/css"],
    ] as const) {
      const r = await get(path);
      expect(r.status).toBe(200);
      expect(r.type).toContain(type);
      expect(r.body).not.toMatch(/https?:\/\/(?!localhost)/); // no CDN, no external site
    }
    expect(page.body).not.toMatch(/https?:\/\//);
    expect((await get("/nope")).status).toBe(404);
    expect((await get("/../package.json")).status).toBe(404);
  });

  it("serves every machine's statechart with one element per state", async () => {
    const svg = await get("/api/statechart/gateway.svg");
    expect(svg.type).toContain("image/svg+xml");
    for (const s of ["standby", "active", "draining", "stopped"])
      expect(svg.body).toContain(`class="state" data-state="${s}"`);
    expect((await get("/api/statechart/domain.svg")).body).toContain('data-state="writing"');
    expect((await get("/api/statechart/nope.svg")).status).toBe(404);
  });

  it("announces itself to the coordinators every presenceEveryMs", async () => {
    const sub = nc.subscribe(subjects.controlInspectViewer(), { max: 2, timeout: 2_000 });
    const seen: string[] = [];
    for await (const m of sub) seen.push(decodeAs(m.data, "inspect.viewer").viewer);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatch(/^ui-/);
  });

  it("records inspection batches from the mesh: history, and live over SSE", async () => {
    const events: string[] = [];
    const ac = new AbortController();
    const sse = new Promise<void>((resolve, reject) => {
      const req = request(new URL("/api/events", ui.url), { signal: ac.signal }, (res) => {
        expect(res.headers["content-type"]).toContain("text/event-stream");
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          events.push(chunk);
          if (events.join("").includes("a-gw-2")) resolve();
        });
      });
      req.on("error", (err) => (ac.signal.aborted ? resolve() : reject(err)));
      req.end();
    });
    await new Promise((r) => setTimeout(r, 200));
    nc.publish(
      subjects.gatewayInspect("edge-a", "a-gw-1"),
      batch([{ actor: "gateway/a-gw-1", state: "active", term: 3 }]),
    );
    nc.publish(
      subjects.gatewayInspect("edge-a", "a-gw-2"),
      batch([{ actor: "gateway/a-gw-2", state: "standby", term: 3 }]),
    );
    nc.publish(subjects.gatewayInspect("edge-a", "a-gw-2"), new Uint8Array([0xc1])); // garbage: dropped, counted
    await sse;
    ac.abort();
    const all = events.join("");
    expect(all).toContain("event: inspect");
    expect(all).toContain('"actor":"gateway/a-gw-1"');
    const state = JSON.parse((await get("/api/state")).body);
    expect(
      state.entries.map((e: { actor: string; state: string; seq: number }) => `${e.seq}:${e.actor}:${e.state}`),
    ).toEqual(["1:gateway/a-gw-1:active", "2:gateway/a-gw-2:standby"]);
    expect(state.entries[0]).toMatchObject({ domain: "edge-a", source: "gateway/a-gw-1", term: 3 });
    expect(state.topology.error).toMatch(/no active coordinator/);
    expect(JSON.parse((await get("/api/history?since=1")).body).map((e: { seq: number }) => e.seq)).toEqual([2]);
  });

  it("serves Prometheus metrics", async () => {
    const m = await get("/metrics");
    expect(m.status).toBe(200);
    expect(m.body).toContain("raven_messages_rejected_total");
    expect(m.body).toMatch(/raven_messages_rejected_total\{reason="MALFORMED"\} [1-9]/);
    expect(m.body).toContain("raven_channels_open 0");
  });
});
