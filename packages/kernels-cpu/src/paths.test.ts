/**
 * The kernel-path list the suites iterate (test/paths.ts) cannot drift from the addon: every path
 * the addon offers is in it, and a path is only skipped for a reason this machine explains.
 */
import { describe, expect, it } from "vitest";
import {
  ALL_KERNEL_PATHS,
  availablePaths,
  cpuFlags,
  cpuLacks,
  pathSkipReason,
} from "../test/paths";

describe("kernel paths", () => {
  it("every path the addon offers is one the suites iterate", () => {
    expect(ALL_KERNEL_PATHS).toEqual(expect.arrayContaining(availablePaths()));
    expect(availablePaths()).toContain("scalar");
  });

  const unreadable =
    cpuFlags() === undefined ? ` (skipped: CPU flags are not readable on ${process.platform})` : "";
  it.skipIf(unreadable !== "").each(ALL_KERNEL_PATHS)(
    `%s: offered wherever the CPU has its features${unreadable}`,
    (path) => {
      const reason = pathSkipReason(path);
      expect(reason ?? "", path).not.toMatch(/addon does not offer/);
      if (reason === undefined) {
        expect(cpuLacks(path), `${path} runs here, so the CPU has its features`).toBeUndefined();
      }
    },
  );

  it("names the missing features", () => {
    const none = new Set<string>();
    if (process.arch === "x64") {
      expect(cpuLacks("avx2", none)).toBe("this CPU lacks AVX2, FMA, F16C");
      expect(cpuLacks("amx", new Set(["avx512_vnni"]))).toBe("this CPU lacks AMX-TILE, AMX-INT8");
      expect(cpuLacks("neon", none)).toBe("this CPU is not AArch64");
    }
    if (process.arch === "arm64") {
      expect(cpuLacks("neon-i8mm", new Set(["asimd", "asimddp"]))).toBe(
        "this CPU lacks the int8 matrix-multiply extension",
      );
      expect(cpuLacks("avx2", none)).toBe("this CPU is not x86");
    }
    expect(cpuLacks("scalar", none)).toBeUndefined();
    expect(cpuLacks("sve2", none)).toMatch(/does not know/);
  });
});
