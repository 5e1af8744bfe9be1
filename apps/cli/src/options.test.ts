import { InvalidArgumentError } from "commander";
import { describe, expect, it } from "vitest";
import { byteSize } from "./options";

describe("byteSize (--cache-bytes)", () => {
  const parse = byteSize("--cache-bytes");

  it("reads plain counts and binary suffixes", () => {
    expect(parse("0")).toBe(0);
    expect(parse("268435456")).toBe(268435456);
    expect(parse("512M")).toBe(512 * 2 ** 20);
    expect(parse("2g")).toBe(2 * 2 ** 30);
    expect(parse("64KiB")).toBe(64 * 2 ** 10);
    expect(parse("1.5G")).toBe(1.5 * 2 ** 30);
    expect(parse(" 8 MB ")).toBe(8 * 2 ** 20);
  });

  it.each(["", "-1", "12X", "M", "1e9", "lots", "99999999999T"])(
    "refuses %j with a message naming the flag",
    (value) => {
      expect(() => parse(value)).toThrow(InvalidArgumentError);
      expect(() => parse(value)).toThrow(/--cache-bytes must be a byte count/);
    },
  );
});
