// Benchmark flag values: byte counts with binary units, integers with a floor; errors name the flag.
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors";
import { integerFlag, parseBytes } from "../../../bench/flags";

describe("parseBytes", () => {
  it("reads plain counts and KiB/MiB/GiB, case-insensitively", () => {
    expect(parseBytes("1073741824", "--bytes")).toBe(1024 ** 3);
    expect(parseBytes("512KiB", "--bytes")).toBe(512 * 1024);
    expect(parseBytes("32 mib", "--bytes")).toBe(32 * 1024 ** 2);
    expect(parseBytes("1GiB", "--bytes")).toBe(1024 ** 3);
  });

  it("refuses zero, fractions and unknown units with an error naming the flag", () => {
    for (const bad of ["0", "1.5MiB", "10MB", "", "-1"]) {
      expect(() => parseBytes(bad, "--bytes")).toThrow(ConfigError);
      expect(() => parseBytes(bad, "--bytes")).toThrow(/--bytes/);
    }
  });
});

describe("integerFlag", () => {
  it("accepts integers at or above the floor and refuses the rest", () => {
    expect(integerFlag("20", "--kills", 1)).toBe(20);
    expect(integerFlag("0", "--warmup", 0)).toBe(0);
    expect(() => integerFlag("0", "--kills", 1)).toThrow(/--kills.*>= 1/);
    expect(() => integerFlag("2.5", "--kills", 1)).toThrow(ConfigError);
  });
});
