// services/ui: `raven ui`, the statechart debugger (server.ts, recorder.ts, static/), and the statechart
// diagrams drawn from the machines (diagrams.ts), which `raven statecharts export` writes too. Named exports only.
export { startUiServer, STATIC_DIR } from "./server";
export type { UiServer, UiServerOptions } from "./server";
export { DIAGRAM_FORMATS, EXTENSION, MACHINES, diagramsReadme, render } from "./diagrams";
export type { DiagramFormat, MachineName } from "./diagrams";
