// Statechart diagrams drawn from the machine definitions themselves (xstate/graph's toDirectedGraph), as
// Mermaid (GitHub renders it), Graphviz dot, and SVG laid out in-process with elkjs. `raven statecharts export` writes them under
// docs/statecharts; a test fails when the committed files no longer match the machines.
import { toDirectedGraph } from "xstate/graph";
import {
  coordinatorMachine,
  domainMachine,
  gatewayMachine,
  l3TunnelMachine,
  nodeMachine,
  proxyEngineMachine,
  proxyLinkMachine,
} from "../../statecharts";
import { assertNever } from "../../shared/errors";

export const MACHINES = {
  gateway: gatewayMachine,
  domain: domainMachine,
  node: nodeMachine,
  coordinator: coordinatorMachine,
  "proxy-link": proxyLinkMachine,
  "proxy-engine": proxyEngineMachine,
  l3tunnel: l3TunnelMachine,
} as const;
export type MachineName = keyof typeof MACHINES;
export const DIAGRAM_FORMATS = ["mermaid", "dot", "svg"] as const;
export type DiagramFormat = (typeof DIAGRAM_FORMATS)[number];
export const EXTENSION: Record<DiagramFormat, string> = { mermaid: "mmd", dot: "dot", svg: "svg" };

type Edge = { from: string; to: string; label: string };
type Diagram = { id: string; initial: string; finals: string[]; states: string[]; edges: Edge[]; anyState: string[] };

type TransitionLike = { eventType: string; guard?: unknown; target?: readonly { key: string }[] | undefined };

/** A readable label for a transition: the event (xstate's internal names shortened) and its guard. */
function label(t: TransitionLike): string {
  const e = t.eventType;
  const event =
    e === ""
      ? "always"
      : e.startsWith("xstate.after.")
        ? `after ${e.split(".")[2]}`
        : e.startsWith("xstate.done.actor.")
          ? "done"
          : e.startsWith("xstate.error.actor.")
            ? "error"
            : e;
  const guard = typeof t.guard === "string" ? t.guard : (t.guard as { type?: string } | undefined)?.type;
  return guard ? `${event} [${guard}]` : event;
}

export function describeMachine(name: MachineName): Diagram {
  const machine = MACHINES[name];
  const g = toDirectedGraph(machine);
  const root = machine.root as unknown as { config: { initial?: string } };
  const states = g.children.map((c) => c.stateNode.key);
  const finals = g.children
    .filter((c) => (c.stateNode as unknown as { type: string }).type === "final")
    .map((c) => c.stateNode.key);
  const edges: Edge[] = [];
  for (const c of g.children) {
    // Eventless (`always`) transitions are not in the graph's edges; they are read from the state node.
    const always = ((c.stateNode as unknown as { always?: TransitionLike[] }).always ?? []).map((t) => ({
      t,
      from: c.stateNode.key,
    }));
    const evented = c.edges.map((e) => ({ t: e.transition as unknown as TransitionLike, from: e.source.key }));
    for (const { t, from } of [...evented, ...always])
      edges.push({ from, to: t.target?.[0]?.key ?? from, label: label(t) });
  }
  // Transitions declared on the machine itself apply in every state: listed once, not drawn from each state.
  const anyState = g.edges.map((e) => {
    const t = e.transition as unknown as TransitionLike;
    const target = t.target?.[0]?.key;
    return target && target !== machine.id ? `${label(t)} → ${target}` : `${label(t)} (stored)`;
  });
  return { id: machine.id, initial: root.config.initial ?? states[0]!, finals, states, edges, anyState };
}

export function toMermaid(d: Diagram): string {
  const lines = [
    "stateDiagram-v2",
    `  %% ${d.id}: generated from statecharts/ by \`raven statecharts export\``,
    `  [*] --> ${d.initial}`,
  ];
  for (const e of d.edges) lines.push(`  ${e.from} --> ${e.to}: ${e.label}`);
  for (const f of d.finals) lines.push(`  ${f} --> [*]`);
  if (d.anyState.length) {
    lines.push(`  note right of ${d.initial}`);
    lines.push("    in any state:");
    for (const a of d.anyState) lines.push(`    ${a}`);
    lines.push("  end note");
  }
  return lines.join("\n") + "\n";
}

export function toDot(d: Diagram): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    `// ${d.id}: generated from statecharts/ by \`raven statecharts export\``,
    `digraph ${q(d.id)} {`,
    "  rankdir=LR;",
    '  node [shape=box, style=rounded, fontname="Helvetica"];',
    '  edge [fontname="Helvetica", fontsize=10];',
    '  "__start" [shape=point];',
    `  "__start" -> ${q(d.initial)};`,
  ];
  for (const s of d.states) lines.push(`  ${q(s)}${d.finals.includes(s) ? " [peripheries=2]" : ""};`);
  for (const e of d.edges) lines.push(`  ${q(e.from)} -> ${q(e.to)} [label=${q(e.label)}];`);
  if (d.anyState.length) lines.push(`  "__any" [shape=note, label=${q(`in any state:\n${d.anyState.join("\n")}`)}];`);
  lines.push("}");
  return lines.join("\n") + "\n";
}

export async function render(name: MachineName, format: DiagramFormat): Promise<string> {
  const d = describeMachine(name);
  switch (format) {
    case "mermaid":
      return toMermaid(d);
    case "dot":
      return toDot(d);
    case "svg":
      return toSvg(d);
    default:
      return assertNever(format, "diagram format");
  }
}

/** docs/statecharts/README.md: every machine's Mermaid diagram, for GitHub to render. */
export function diagramsReadme(): string {
  const parts = [
    "# Raven's statecharts",
    "",
    "Generated from the machine definitions in `statecharts/` by `raven statecharts export`; a test fails when these no longer match the code.",
    "",
  ];
  for (const name of Object.keys(MACHINES) as MachineName[]) {
    parts.push(
      `## ${name}`,
      "",
      `![${name}](${name}.svg)`,
      "",
      "```mermaid",
      toMermaid(describeMachine(name)).trimEnd(),
      "```",
      "",
    );
  }
  return parts.join("\n");
}

// --- SVG (laid out with elkjs, in-process: no external tool, nothing fetched) ----------------------------------

type ElkPoint = { x: number; y: number };
type ElkNode = { id: string; x?: number; y?: number; width: number; height: number; labels?: { text: string }[] };
type ElkEdge = {
  id: string;
  sources: string[];
  targets: string[];
  labels?: { text: string; width: number; height: number; x?: number; y?: number }[];
  sections?: { startPoint: ElkPoint; endPoint: ElkPoint; bendPoints?: ElkPoint[] }[];
};
type ElkGraph = {
  id: string;
  layoutOptions: Record<string, string>;
  children: ElkNode[];
  edges: ElkEdge[];
  width?: number;
  height?: number;
};

const CHAR_PX = 7;
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const n1 = (v: number) => Math.round(v * 10) / 10;

export async function toSvg(d: Diagram): Promise<string> {
  const { default: ELK } = await import("elkjs/lib/elk.bundled.js");
  const elk = new ELK();
  const stateBox = (s: string): ElkNode => ({ id: s, width: Math.max(70, s.length * CHAR_PX + 24), height: 34 });
  const note = d.anyState.length ? ["in any state:", ...d.anyState] : [];
  const graph: ElkGraph = {
    id: d.id,
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.layered.spacing.nodeNodeBetweenLayers": "70",
      "elk.spacing.nodeNode": "40",
      "elk.spacing.edgeLabel": "4",
      "elk.edgeLabels.inline": "false",
    },
    children: [
      { id: "__start", width: 12, height: 12 },
      ...d.states.map(stateBox),
      ...(note.length
        ? [{ id: "__any", width: Math.max(...note.map((l) => l.length)) * CHAR_PX + 16, height: note.length * 16 + 10 }]
        : []),
    ],
    edges: [
      { id: "e_start", sources: ["__start"], targets: [d.initial] },
      ...d.edges.map((e, i) => ({
        id: `e${i}`,
        sources: [e.from],
        targets: [e.to],
        labels: [{ text: e.label, width: e.label.length * 6 + 6, height: 14 }],
      })),
    ],
  };
  const laid = (await elk.layout(graph as never)) as unknown as ElkGraph;
  const out: string[] = [];
  const w = n1((laid.width ?? 0) + 20);
  const h = n1((laid.height ?? 0) + 20);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="-10 -10 ${w} ${h}" width="${w}" height="${h}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<!-- ${esc(d.id)}: generated from statecharts/ by raven statecharts export -->`);
  out.push(
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>',
  );
  for (const e of laid.edges) {
    for (const s of e.sections ?? []) {
      const pts = [s.startPoint, ...(s.bendPoints ?? []), s.endPoint].map((p) => `${n1(p.x)},${n1(p.y)}`).join(" ");
      out.push(
        `<polyline class="edge" data-edge="${esc(e.id)}" points="${pts}" fill="none" stroke="#444" marker-end="url(#arrow)"/>`,
      );
    }
    for (const l of e.labels ?? []) {
      out.push(
        `<text class="edge-label" x="${n1((l.x ?? 0) + 3)}" y="${n1((l.y ?? 0) + 11)}" fill="#225">${esc(l.text)}</text>`,
      );
    }
  }
  for (const n of laid.children) {
    const x = n1(n.x ?? 0);
    const y = n1(n.y ?? 0);
    if (n.id === "__start") {
      out.push(`<circle cx="${n1(x + 6)}" cy="${n1(y + 6)}" r="6" fill="#222"/>`);
    } else if (n.id === "__any") {
      out.push(
        `<rect x="${x}" y="${y}" width="${n1(n.width)}" height="${n1(n.height)}" fill="#fffbe6" stroke="#bba"/>`,
      );
      note.forEach((line, i) =>
        out.push(`<text x="${n1(x + 8)}" y="${n1(y + 18 + i * 16)}" fill="#443">${esc(line)}</text>`),
      );
    } else {
      const final = d.finals.includes(n.id);
      out.push(
        `<g class="state" data-state="${esc(n.id)}"><rect x="${x}" y="${y}" width="${n1(n.width)}" height="${n1(n.height)}" rx="10" fill="#eef3ff" stroke="#335" stroke-width="${final ? 3 : 1.5}"/>` +
          `<text x="${n1(x + n.width / 2)}" y="${n1(y + 21)}" text-anchor="middle">${esc(n.id)}</text></g>`,
      );
    }
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}
