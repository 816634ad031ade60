// Raven fleet debugger (served by `raven ui`; plain JS, no dependencies, nothing loaded from elsewhere).
// Live: the topology from the coordinator's status (every second) and the actors' inspection entries
// (Server-Sent Events). Replay: the timeline's cursor picks a point in the recorded entries; every view
// (roles, terms, statechart highlight, event log) is rebuilt from the entries up to it.
const $ = (sel, el = document) => el.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmtTime = (ms) => new Date(ms).toISOString().slice(11, 23);
/**
 * Updates `el` in place to the given HTML: nodes that stay keep their identity (a click or hover is not lost
 * to a re-render several times a second); only changed attributes and text are written.
 */
function setHtml(el, html) {
  const next = document.createElement(el.tagName);
  next.innerHTML = html;
  morphChildren(el, next);
}
function morph(from, to) {
  for (const a of [...from.attributes]) if (!to.hasAttribute(a.name)) from.removeAttribute(a.name);
  for (const a of [...to.attributes]) if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
  morphChildren(from, to);
}
function morphChildren(from, to) {
  const fc = [...from.childNodes];
  const tc = [...to.childNodes];
  tc.forEach((t, i) => {
    const f = fc[i];
    if (!f) from.appendChild(t);
    else if (f.nodeType !== t.nodeType || f.nodeName !== t.nodeName) from.replaceChild(t, f);
    else if (f.nodeType === Node.TEXT_NODE) {
      if (f.nodeValue !== t.nodeValue) f.nodeValue = t.nodeValue;
    } else if (f.nodeType === Node.ELEMENT_NODE) morph(f, t);
  });
  for (let i = tc.length; i < fc.length; i++) from.removeChild(fc[i]);
}
const MACHINE_OF_KIND = { gateway: "gateway", node: "node", domain: "domain", coordinator: "coordinator" };

const state = {
  topology: null,
  entries: [],
  /** null = live; otherwise an index into entries. */
  cursor: null,
  selected: null,
  svgs: new Map(),
  chartMachine: null,
  renderQueued: false,
};

function lastSeq() {
  return state.entries.length ? state.entries[state.entries.length - 1].seq : 0;
}

async function loadState() {
  const res = await fetch("/api/state");
  const j = await res.json();
  state.topology = j.topology;
  state.entries = j.entries;
  if (state.cursor !== null && state.cursor >= state.entries.length) state.cursor = null;
  queueRender();
}

function connect() {
  const es = new EventSource("/api/events");
  const conn = $("#conn");
  let broken = false;
  es.addEventListener("open", () => {
    conn.dataset.conn = "live";
    conn.textContent = "live";
    if (broken) loadState(); // the server may have restarted: its history and sequence numbers are new
    broken = false;
  });
  es.addEventListener("error", () => {
    conn.dataset.conn = "down";
    conn.textContent = "disconnected";
    broken = true;
  });
  es.addEventListener("inspect", (e) => {
    const list = JSON.parse(e.data);
    const seq = lastSeq();
    for (const entry of list) if (entry.seq > seq) state.entries.push(entry);
    queueRender();
  });
  es.addEventListener("topology", (e) => {
    state.topology = JSON.parse(e.data);
    queueRender();
  });
}

function queueRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    render();
  });
}

/** Each actor's newest entry at the cursor (or now). */
function view() {
  const end = state.cursor === null ? state.entries.length : state.cursor + 1;
  const latest = new Map();
  for (let i = 0; i < end; i++) latest.set(state.entries[i].actor, state.entries[i]);
  return latest;
}

function stateName(s) {
  if (!s) return "";
  if (s.startsWith("{")) {
    try {
      return Object.keys(JSON.parse(s))[0] ?? s;
    } catch {
      return s;
    }
  }
  return s;
}

function render() {
  const latest = view();
  document.body.classList.toggle("replay", state.cursor !== null);
  renderTopology(latest);
  renderCoordinators(latest);
  renderDetail(latest);
  renderTimeline();
}

function ageText(ms) {
  if (ms === null || ms === undefined) return "no hb";
  return ms < 10_000 ? `hb ${ms} ms` : `hb ${(ms / 1000).toFixed(0)} s`;
}

function renderTopology(latest) {
  const t = state.topology;
  const st = t?.status;
  $("#coordinator").textContent = st ? `coordinator ${st.coordinator}${t.error ? ` — ${t.error}` : ""}` : t?.error ?? "";
  if (!st) {
    setHtml($("#domains"), `<p class="muted">${esc(t?.error ?? "waiting for the coordinator…")}</p>`);
    return;
  }
  const replay = state.cursor !== null;
  const html = [];
  for (const d of st.domains) {
    const domainActor = `domain/${d.gateway}`;
    const de = latest.get(domainActor);
    const roles = new Map();
    let replayTerm = de?.term ?? null;
    for (const c of d.candidates) {
      const ge = latest.get(`gateway/${c.node}`);
      let role;
      if (replay) role = ge ? stateName(ge.state) : "unknown";
      else if (d.active.some((a) => a.nodeName === c.node)) role = "active";
      // Unhealthy and silent for longer than a few heartbeats: gone (a just-restarted one rises as standby).
      else if (!c.healthy && (c.lastHeartbeatAgeMs === null || c.lastHeartbeatAgeMs > 500)) role = "down";
      else role = ge && stateName(ge.state) === "draining" ? "draining" : "standby";
      roles.set(c.node, role);
      if (replay && ge?.term !== null && ge?.term !== undefined) replayTerm = Math.max(replayTerm ?? 0, ge.term);
    }
    const term = replay ? (replayTerm ?? "?") : d.term;
    const actives = d.candidates.filter((c) => roles.get(c.node) === "active").map((c) => c.node);
    html.push(`<div class="domain${d.problem ? " problem" : ""}" data-domain="${esc(d.domain)}">`);
    html.push(
      `<div class="domain-head${state.selected === domainActor ? " selected" : ""}" data-actor="${esc(domainActor)}">` +
        `<span class="name">${esc(d.domain)}</span><span class="muted">${d.solo ? "solo node" : `Gateway ${esc(d.gateway)}`}</span>` +
        `<span>term <span class="term" data-field="term">${esc(term)}</span></span>` +
        `<span class="muted">active: <span data-field="active">${esc(actives.join(", ") || "none")}</span></span>` +
        (de ? `<span class="pill" title="DomainActor state">${esc(stateName(de.state))}</span>` : "") +
        `</div>`,
    );
    if (d.problem) html.push(`<div class="problem-text">${esc(d.problem)}</div>`);
    if (d.tunnelProblem) html.push(`<div class="problem-text">tunnel mode refused: ${esc(d.tunnelProblem)}</div>`);
    html.push(`<div class="rows">`);
    for (const c of d.candidates) {
      const actor = `gateway/${c.node}`;
      const ge = latest.get(actor);
      const role = roles.get(c.node);
      html.push(
        `<div class="row candidate${state.selected === actor ? " selected" : ""}" data-node="${esc(c.node)}" data-role="${esc(role)}" data-actor="${esc(actor)}" title="gateway candidate">` +
          `<span class="dot ${c.healthy ? "ok" : "bad"}"></span><span>${esc(c.node)} <span class="muted">${esc(c.types.join("+"))}</span></span>` +
          `<span class="role" data-role="${esc(role)}">${esc(role)}</span><span class="age">${replay ? "" : esc(ageText(c.lastHeartbeatAgeMs))}</span>` +
          `<span class="pill" title="GatewayActor state, term">${ge ? `${esc(stateName(ge.state))} t${esc(ge.term ?? "-")}` : "—"}</span></div>`,
      );
      const px = replay ? null : t.proxies?.[c.node];
      if (px && (px.tunnels.length > 0 || px.channelsOpen > 0)) {
        // The proxy's peer links (TunnelActors) and channels, from the gateway's own report.
        const links = px.tunnels.map((l) => `<span class="tunnel" data-peer="${esc(l.peer)}" data-state="${esc(l.state)}">⇄ ${esc(l.peer)} ${esc(l.state)} · ${esc(l.spares)} spare</span>`);
        html.push(
          `<div class="row proxy" data-node="${esc(c.node)}" title="proxy: peer links and channels">` +
            `<span></span><span class="muted">${links.join(" ") || "no peer links"}</span>` +
            `<span class="role" data-field="channels">${esc(px.channelsOpen)} ch</span><span class="age">${esc(bytesText(px.bytesIn + px.bytesOut))}</span><span></span></div>`,
        );
      }
      const l3 = replay ? null : t.tunnels?.[c.node];
      if (l3?.active && (l3.tunnels.length > 0 || l3.error)) {
        // Tunnel mode: the L3 TunnelActors of the active tunnel endpoint, from the gateway's own report.
        const links = l3.tunnels.map(
          (l) =>
            `<span class="tunnel${state.selected === `tunnel/${c.node}/${l.peer}` ? " selected" : ""}" data-actor="${esc(`tunnel/${c.node}/${l.peer}`)}" data-l3-peer="${esc(l.peer)}" data-state="${esc(l.state)}" title="${esc(l.error ?? "L3 TunnelActor: click for its statechart")}">⇶ ${esc(l.peer)} ${esc(l.state)}` +
            `${l.latencyUs === null ? "" : ` · ${esc((l.latencyUs / 1000).toFixed(2))} ms`}</span>`,
        );
        const bytes = l3.tunnels.reduce((sum, l) => sum + (l.bytesIn ?? 0) + (l.bytesOut ?? 0), 0);
        html.push(
          `<div class="row l3" data-node="${esc(c.node)}" title="tunnel mode (${esc(l3.driver)}): peer domains">` +
            `<span></span><span class="muted">${links.join(" ") || esc(l3.error ?? "no peers")}</span>` +
            `<span class="role">${esc(l3.driver)}</span><span class="age">${esc(bytesText(bytes))}</span><span></span></div>`,
        );
      }
    }
    for (const n of d.nodes) {
      const actor = `node/${n.node}`;
      const ne = latest.get(actor);
      html.push(
        `<div class="row node${state.selected === actor ? " selected" : ""}" data-node="${esc(n.node)}" data-actor="${esc(actor)}" title="node">` +
          `<span class="dot ${n.ready ? "ok" : "bad"}"></span><span>${esc(n.node)} <span class="muted">${esc(n.internalIP)}</span></span>` +
          `<span class="role">node</span><span class="age">${replay ? "" : esc(ageText(n.lastHeartbeatAgeMs))}</span>` +
          `<span class="pill" title="NodeActor state">${ne ? esc(stateName(ne.state)) : "—"}</span></div>`,
      );
    }
    html.push(`</div></div>`);
  }
  setHtml($("#domains"), html.join(""));
}

function bytesText(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

function renderCoordinators(latest) {
  const rows = [];
  for (const [actor, e] of latest) {
    if (!actor.startsWith("coordinator/")) continue;
    rows.push(
      `<div class="row coordinator${state.selected === actor ? " selected" : ""}" data-actor="${esc(actor)}">` +
        `<span class="dot ${stateName(e.state) === "active" ? "ok" : ""}"></span><span>${esc(actor.slice(12))}</span>` +
        `<span class="role" data-role="${esc(stateName(e.state))}">${esc(stateName(e.state))}</span><span class="age">${esc(fmtTime(e.at))}</span><span></span></div>`,
    );
  }
  setHtml($("#coordinators"), rows.join("") || `<p class="muted">no inspection from the coordinators yet</p>`);
}

async function chartFor(machine) {
  if (!state.svgs.has(machine)) {
    state.svgs.set(
      machine,
      fetch(`/api/statechart/${machine}.svg`).then((r) => (r.ok ? r.text() : `<p class="muted">no diagram for ${esc(machine)}</p>`)),
    );
  }
  return state.svgs.get(machine);
}

function renderDetail(latest) {
  const actor = state.selected;
  if (!actor) return;
  const e = latest.get(actor);
  const machine = e?.machine ?? MACHINE_OF_KIND[actor.split("/")[0]] ?? "gateway";
  $("#actor-title").textContent = `${actor} (${machine})`;
  $("#actor-state").textContent = e ? `${stateName(e.state)}${e.term !== null && e.term !== undefined ? ` · term ${e.term}` : ""}` : "no events yet";
  $("#actor-state").dataset.state = e ? stateName(e.state) : "";
  const highlight = () => {
    const current = e ? stateName(e.state) : null;
    for (const g of document.querySelectorAll("#chart g.state")) g.classList.toggle("current", g.dataset.state === current);
    $("#chart").dataset.current = current ?? "";
  };
  if (state.chartMachine !== machine) {
    state.chartMachine = machine;
    $("#chart").innerHTML = "";
    chartFor(machine).then((svg) => {
      if (state.chartMachine !== machine) return;
      $("#chart").innerHTML = svg;
      queueRender();
    });
  } else {
    highlight();
  }
  let context = e?.context ?? "";
  try {
    context = JSON.stringify(JSON.parse(context), null, 2);
  } catch {
    // cut at 1 KiB by the publisher: shown as it is
  }
  $("#context").textContent = context;
  const end = state.cursor === null ? state.entries.length : state.cursor + 1;
  const rows = [];
  for (let i = end - 1; i >= 0 && rows.length < 200; i--) {
    const x = state.entries[i];
    if (x.actor !== actor) continue;
    const cls = [x.changed ? "changed" : "", state.cursor !== null && i === state.cursor ? "cursor" : ""].join(" ").trim();
    rows.push(
      `<tr class="${cls}" data-index="${i}"><td>${esc(fmtTime(x.at))}</td><td>${esc(x.event)}</td><td>${esc(stateName(x.state))}</td>` +
        `<td>${esc(x.term ?? "")}</td><td class="payload">${esc(x.payload ?? "")}</td></tr>`,
    );
  }
  const body = $("#log tbody");
  const html = rows.join("") || `<tr><td colspan="5" class="muted">no events recorded for this actor yet</td></tr>`;
  if (body.dataset.html !== html) {
    body.innerHTML = html;
    body.dataset.html = html;
  }
}

function renderTimeline() {
  const slider = $("#t-slider");
  const n = state.entries.length;
  slider.max = String(Math.max(0, n - 1));
  const at = state.cursor ?? n - 1;
  slider.value = String(Math.max(0, at));
  $("#t-live").classList.toggle("on", state.cursor === null);
  const e = state.entries[at];
  $("#t-label").textContent = e
    ? `${state.cursor === null ? "live" : `#${at + 1}/${n}`} ${fmtTime(e.at)} ${e.actor}: ${e.event} → ${stateName(e.state)}${e.term !== null ? ` (term ${e.term})` : ""}`
    : "no events recorded yet";
}

function seek(index) {
  state.cursor = index === null || index >= state.entries.length - 1 ? (index === null ? null : state.entries.length - 1) : Math.max(0, index);
  queueRender();
}

function step(dir) {
  const n = state.entries.length;
  let i = state.cursor ?? n - 1;
  for (i += dir; i >= 0 && i < n; i += dir) if (state.entries[i].changed) break;
  if (i >= n) return seek(null);
  seek(Math.max(0, i));
}

document.addEventListener("click", (ev) => {
  const el = ev.target.closest("[data-actor]");
  if (el) {
    state.selected = el.dataset.actor;
    queueRender();
    return;
  }
  const row = ev.target.closest("#log tr[data-index]");
  if (row) seek(Number(row.dataset.index));
});
$("#t-slider").addEventListener("input", (ev) => seek(Number(ev.target.value)));
$("#t-first").addEventListener("click", () => seek(0));
$("#t-prev").addEventListener("click", () => step(-1));
$("#t-next").addEventListener("click", () => step(1));
$("#t-live").addEventListener("click", () => seek(null));
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT") return;
  if (ev.key === "ArrowLeft") step(-1);
  else if (ev.key === "ArrowRight") step(1);
  else if (ev.key === "End") seek(null);
});

const initial = new URLSearchParams(location.search).get("actor");
if (initial) state.selected = initial;
loadState().then(connect, (err) => {
  $("#domains").textContent = `cannot load /api/state: ${err}`;
  connect();
});
