// The committed diagrams under docs/statecharts must be exactly what the machines draw today: change a
// machine, and this fails until `bin/raven statecharts export --format mermaid|dot --out docs/statecharts`
// is run again (for each of mermaid, dot and svg).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../../services/fleet/build";
import {
  DIAGRAM_FORMATS,
  EXTENSION,
  MACHINES,
  describeMachine,
  diagramsReadme,
  render,
  type MachineName,
} from "../../../services/ui/diagrams";

const DOCS = join(REPO_ROOT, "docs", "statecharts");
const names = Object.keys(MACHINES) as MachineName[];

describe("statechart diagrams", () => {
  for (const name of names) {
    for (const format of DIAGRAM_FORMATS) {
      it(`docs/statecharts/${name}.${EXTENSION[format]} matches the ${name} machine`, async () => {
        expect(readFileSync(join(DOCS, `${name}.${EXTENSION[format]}`), "utf8")).toBe(await render(name, format));
      });
    }
  }

  it("docs/statecharts/README.md embeds every Mermaid diagram as generated", () => {
    expect(readFileSync(join(DOCS, "README.md"), "utf8")).toBe(diagramsReadme());
  });

  it("the project README shows the gateway diagram as generated", async () => {
    expect(readFileSync(join(REPO_ROOT, "README.md"), "utf8")).toContain(
      "```mermaid\n" + (await render("gateway", "mermaid")),
    );
  });

  it("the SVG draws every state of the machine", async () => {
    const svg = await render("domain", "svg");
    for (const s of describeMachine("domain").states) expect(svg).toContain(`data-state="${s}"`);
    expect(svg.match(/class="edge"/g)?.length).toBeGreaterThanOrEqual(describeMachine("domain").edges.length);
  });

  it("draws every state and every transition of the machine", () => {
    const d = describeMachine("gateway");
    expect(d.states.sort()).toEqual(["active", "draining", "lapsed", "standby", "stopped"]);
    expect(d.finals).toEqual(["stopped"]);
    expect(d.edges).toHaveLength(19);
    expect(d.edges).toContainEqual({ from: "active", to: "lapsed", label: "TICK [leaseExpired]" });
    expect(d.edges).toContainEqual({ from: "lapsed", to: "standby", label: "TICK [lapseOver]" });
    const domain = describeMachine("domain");
    expect(domain.edges).toContainEqual({ from: "deciding", to: "writing", label: "always [needsWrite]" });
    expect(domain.anyState).toContain("RECORD [isNewer] (stored)");
  });
});
