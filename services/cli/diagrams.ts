// Statechart diagrams drawn from the machine definitions themselves (xstate/graph's toDirectedGraph), as
// Mermaid (GitHub renders it) and Graphviz dot. `raven statecharts export` writes them under
// docs/statecharts; a test fails when the committed files no longer match the machines.
import { toDirectedGraph } from "xstate/graph";
import { coordinatorMachine, domainMachine, gatewayMachine, nodeMachine } from "../../statecharts";

export const MACHINES = {
  gateway: gatewayMachine,
  domain: domainMachine,
  node: nodeMachine,
  coordinator: coordinatorMachine,
} as const;
export type MachineName = keyof typeof MACHINES;
export const DIAGRAM_FORMATS = ["mermaid", "dot"] as const;
export type DiagramFormat = (typeof DIAGRAM_FORMATS)[number];
export const EXTENSION: Record<DiagramFormat, string> = { mermaid: "mmd", dot: "dot" };

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
  const finals = g.children.filter((c) => (c.stateNode as unknown as { type: string }).type === "final").map((c) => c.stateNode.key);
  const edges: Edge[] = [];
  for (const c of g.children) {
    // Eventless (`always`) transitions are not in the graph's edges; they are read from the state node.
    const always = ((c.stateNode as unknown as { always?: TransitionLike[] }).always ?? []).map((t) => ({ t, from: c.stateNode.key }));
    const evented = c.edges.map((e) => ({ t: e.transition as unknown as TransitionLike, from: e.source.key }));
    for (const { t, from } of [...evented, ...always]) edges.push({ from, to: t.target?.[0]?.key ?? from, label: label(t) });
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
  const lines = ["stateDiagram-v2", `  %% ${d.id}: generated from statecharts/ by \`raven statecharts export\``, `  [*] --> ${d.initial}`];
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

export function render(name: MachineName, format: DiagramFormat): string {
  const d = describeMachine(name);
  return format === "mermaid" ? toMermaid(d) : toDot(d);
}

/** docs/statecharts/README.md: every machine's Mermaid diagram, for GitHub to render. */
export function diagramsReadme(): string {
  const parts = ["# Raven's statecharts", "", "Generated from the machine definitions in `statecharts/` by `raven statecharts export`; a test fails when these no longer match the code.", ""];
  for (const name of Object.keys(MACHINES) as MachineName[]) {
    parts.push(`## ${name}`, "", "```mermaid", render(name, "mermaid").trimEnd(), "```", "");
  }
  return parts.join("\n");
}
