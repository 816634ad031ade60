import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  defaultConfig,
  defaultTimings,
  loadConfigFile,
  parseConfig,
  parseTimings,
  type Timings,
} from "../../../shared/config";
import { ConfigError, ErrorCode, RavenError } from "../../../shared/errors";

const keys = Object.keys(defaultTimings) as (keyof Timings)[];

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toBeInstanceOf(RavenError);
    expect((err as ConfigError).code).toBe(ErrorCode.Config);
    expect((err as ConfigError).name).toBe("ConfigError");
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("defaults", () => {
  it("are valid, complete and frozen", () => {
    expect(parseTimings(undefined)).toBe(defaultTimings);
    expect(parseConfig(undefined)).toBe(defaultConfig);
    expect(parseConfig({})).toEqual(defaultConfig);
    expect(parseTimings({})).toEqual(defaultTimings);
    // Re-parsing the defaults themselves must pass every invariant.
    expect(parseTimings({ ...defaultTimings })).toEqual(defaultTimings);
    expect(Object.isFrozen(defaultTimings)).toBe(true);
    expect(Object.isFrozen(defaultConfig)).toBe(true);
    for (const k of keys) {
      expect(Number.isInteger(defaultTimings[k]), k).toBe(true);
      expect(defaultTimings[k], k).toBeGreaterThan(0);
      expect(k, "units in the key name").toMatch(/Ms$|Count$/);
    }
  });

  it("keep their documented relationships", () => {
    const t = defaultTimings;
    expect(t.gatewayFenceMs).toBeLessThan(t.gatewayDeadAfterMs);
    expect(t.gatewayHeartbeatMs * 2).toBeLessThanOrEqual(t.gatewayFenceMs);
    expect(t.coordinatorRenewMs * 3).toBeLessThanOrEqual(t.coordinatorLeaseMs);
    expect(t.nodeHeartbeatMs * 2).toBeLessThanOrEqual(t.nodeDeadAfterMs);
  });

  it("a parsed config is frozen and fills in the keys not given", () => {
    const cfg = parseConfig({ timings: { resyncMs: 5000, retryMs: 50 } });
    expect(cfg.timings).toEqual({ ...defaultTimings, resyncMs: 5000, retryMs: 50 });
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.timings)).toBe(true);
    expect(() => {
      (cfg.timings as { resyncMs: number }).resyncMs = 1;
    }).toThrow(TypeError);
  });
});

describe("bad values name the key", () => {
  const badValues: unknown[] = [0, -1, 1.5, "100", null, Number.NaN, Number.POSITIVE_INFINITY, true, [100], {}];
  for (const key of keys) {
    it(`timings.${key}`, () => {
      for (const value of badValues) {
        const err = configError(() => parseTimings({ [key]: value }));
        expect(err.key).toBe(`timings.${key}`);
        expect(err.message).toContain(`timings.${key}`);
        expect(err.message).toContain("positive integer");
      }
      const viaConfig = configError(() => parseConfig({ timings: { [key]: -5 } }));
      expect(viaConfig.key).toBe(`timings.${key}`);
      expect(viaConfig.message).toBe(`config timings.${key}: must be a positive integer, got -5`);
    });
  }

  it("unknown keys are refused, naming them", () => {
    const t = configError(() => parseTimings({ heartbeatMs: 100 }));
    expect(t.key).toBe("timings.heartbeatMs");
    expect(t.message).toContain("not a known setting");
    const top = configError(() => parseConfig({ timing: {} }));
    expect(top.message).toContain("timing");
    expect(top.message).toContain("not a known setting");
    // case matters: a near miss is still unknown
    expect(configError(() => parseTimings({ GatewayHeartbeatMs: 100 })).key).toBe("timings.GatewayHeartbeatMs");
  });

  // `key in defaultTimings` (config.ts parseTimings) also sees Object.prototype, so these JSON keys are
  // silently accepted and ignored instead of refused. Object.hasOwn(defaultTimings, key) fixes it.
  it("keys inherited from Object.prototype are unknown keys too", () => {
    for (const key of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const err = configError(() => parseTimings(JSON.parse(`{"${key}": 100}`)));
      expect(err.key).toBe(`timings.${key}`);
    }
  });

  it("non-object sections are refused", () => {
    for (const value of [null, [], "x", 5]) {
      expect(configError(() => parseTimings(value)).key).toBe("timings");
      expect(configError(() => parseConfig(value)).key).toBe("config");
      expect(configError(() => parseConfig({ timings: value })).key).toBe("timings");
    }
  });
});

describe("invariants", () => {
  const cases: [string, Partial<Timings>, Partial<Timings>, keyof Timings][] = [
    // name, breaking override, boundary override that is still fine, key the error must name
    ["fence below dead-after", { gatewayFenceMs: 300 }, { gatewayFenceMs: 299 }, "gatewayFenceMs"],
    [
      "fence below dead-after (dead lowered)",
      { gatewayDeadAfterMs: 240 },
      { gatewayDeadAfterMs: 251 },
      "gatewayFenceMs",
    ],
    [
      "gateway heartbeat at most half the fence",
      { gatewayHeartbeatMs: 126 },
      { gatewayHeartbeatMs: 125, gatewayStandbyHeartbeatMs: 300 },
      "gatewayHeartbeatMs",
    ],
    [
      "standby heartbeat no faster than an active's",
      { gatewayStandbyHeartbeatMs: 99 },
      { gatewayStandbyHeartbeatMs: 100 },
      "gatewayStandbyHeartbeatMs",
    ],
    [
      "standby heartbeat at most 10 times slower",
      { gatewayStandbyHeartbeatMs: 1001 },
      { gatewayStandbyHeartbeatMs: 1000 },
      "gatewayStandbyHeartbeatMs",
    ],
    [
      "gateway heartbeat at most half the fence (fence lowered)",
      { gatewayFenceMs: 199 },
      { gatewayFenceMs: 200 },
      "gatewayHeartbeatMs",
    ],
    [
      "renew at most a third of the lease",
      { coordinatorRenewMs: 334 },
      { coordinatorRenewMs: 333 },
      "coordinatorRenewMs",
    ],
    [
      "renew at most a third of the lease (lease lowered)",
      { coordinatorLeaseMs: 599 },
      { coordinatorLeaseMs: 600 },
      "coordinatorRenewMs",
    ],
    [
      "node heartbeat at most half of node dead-after",
      { nodeHeartbeatMs: 1751 },
      { nodeHeartbeatMs: 1750 },
      "nodeHeartbeatMs",
    ],
    [
      "node heartbeat at most half of node dead-after (dead lowered)",
      { nodeDeadAfterMs: 1999 },
      { nodeDeadAfterMs: 2000 },
      "nodeHeartbeatMs",
    ],
  ];
  for (const [name, broken, boundary, key] of cases) {
    it(`${name}: refused naming ${key}, accepted at the boundary`, () => {
      const err = configError(() => parseTimings(broken));
      expect(err.key).toBe(`timings.${key}`);
      expect(err.message.startsWith(`config timings.${key}: must be `)).toBe(true);
      expect(parseTimings(boundary)).toEqual({ ...defaultTimings, ...boundary });
    });
  }

  it("the fence error names the dead-after value it must stay below", () => {
    expect(configError(() => parseTimings({ gatewayFenceMs: 400 })).message).toBe(
      "config timings.gatewayFenceMs: must be below gatewayDeadAfterMs (300)",
    );
  });

  it("a consistent set of slower timings passes", () => {
    const slow = {
      gatewayHeartbeatMs: 1000,
      gatewayDeadAfterMs: 3000,
      gatewayFenceMs: 2500,
      coordinatorLeaseMs: 10_000,
      coordinatorRenewMs: 2000,
      nodeHeartbeatMs: 5000,
      nodeDeadAfterMs: 20_000,
    };
    expect(parseTimings(slow)).toEqual({ ...defaultTimings, ...slow, gatewayStandbyHeartbeatMs: 3000 });
  });

  it("a standby heartbeats three times slower unless set, and never faster than an active or past the stretch limit", () => {
    expect(defaultTimings.gatewayStandbyHeartbeatMs).toBe(3 * defaultTimings.gatewayHeartbeatMs);
    expect(parseTimings({ gatewayHeartbeatMs: 50 }).gatewayStandbyHeartbeatMs).toBe(150);
    expect(parseTimings({ gatewayStandbyHeartbeatMs: 100 }).gatewayStandbyHeartbeatMs).toBe(100);
  });
});

describe("loadConfigFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "raven-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it("returns the defaults when no file is given", () => {
    expect(loadConfigFile(undefined)).toBe(defaultConfig);
    expect(loadConfigFile("")).toBe(defaultConfig);
  });

  it("parses a valid file", () => {
    const file = write("ok.json", JSON.stringify({ timings: { resyncMs: 2500 } }));
    expect(loadConfigFile(file).timings.resyncMs).toBe(2500);
  });

  it("a missing file is an error naming the file", () => {
    const file = join(dir, "does-not-exist.json");
    const err = configError(() => loadConfigFile(file));
    expect(err.key).toBe("--config");
    expect(err.message).toContain(file);
    expect(err.message).toContain("cannot read");
  });

  it("a file that is not JSON is an error naming the file", () => {
    const file = write("broken.json", "{ timings: ");
    const err = configError(() => loadConfigFile(file));
    expect(err.message).toContain(file);
    expect(err.message).toContain("is not JSON");
  });

  it("a bad value in the file is an error naming the key", () => {
    const file = write("bad-value.json", JSON.stringify({ timings: { sweepMs: 0 } }));
    expect(configError(() => loadConfigFile(file)).key).toBe("timings.sweepMs");
  });

  // The brief: every loadConfigFile error names the file. Read and JSON errors do; a validation error from
  // parseConfig does not, so with several config files in play the operator cannot tell which one is bad.
  it("a bad value in the file also names the file", () => {
    const file = write("bad-value-2.json", JSON.stringify({ timings: { sweepMs: 0 } }));
    expect(configError(() => loadConfigFile(file)).message).toContain(file);
  });
});
