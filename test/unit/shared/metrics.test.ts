// Counters across threads: the proxy thread's counters, sent with its report, are exported beside the main
// thread's, summed per label set, and a later report replaces the earlier one (its values are totals).
import { describe, expect, it } from "vitest";
import { Counters } from "../../../shared/metrics";

const byKey = (c: Counters) =>
  Object.fromEntries([...c.entries()].map((e) => [`${e.name}${JSON.stringify(e.labels)}`, e.value]));

describe("Counters.setThread", () => {
  it("exports another thread's counters with these, summed per name and labels", () => {
    const main = new Counters();
    main.inc("raven_x_total", { reason: "a" });
    const proxy = new Counters();
    proxy.inc("raven_x_total", { reason: "a" }, 2);
    proxy.inc("raven_x_total", { reason: "b" });
    proxy.inc("raven_proxy_requests_repeated_total");
    main.setThread("proxy", proxy.own());
    expect(byKey(main)).toEqual({
      'raven_x_total{"reason":"a"}': 3,
      'raven_x_total{"reason":"b"}': 1,
      "raven_proxy_requests_repeated_total{}": 1,
    });
    // The thread's own counts stay its own.
    expect(main.get("raven_x_total", { reason: "a" })).toBe(1);
  });

  it("replaces a thread's earlier report with its newer totals", () => {
    const main = new Counters();
    main.setThread("proxy", [{ name: "raven_y_total", labels: {}, value: 5 }]);
    main.setThread("proxy", [{ name: "raven_y_total", labels: {}, value: 7 }]);
    expect(byKey(main)).toEqual({ "raven_y_total{}": 7 });
  });
});
