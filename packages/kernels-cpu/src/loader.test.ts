import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { isBitnetError } from "@bitnet-ts/errors";
import { describe, expect, it } from "vitest";
import { expectedKernelPath } from "./backend";
import {
  ABI_VERSION,
  bindingCandidates,
  KernelUnavailableError,
  loadBinding,
  loadBindingFrom,
} from "./loader";

describe("loading the addon", () => {
  it("finds the build and reports the kernel paths this CPU runs", () => {
    const binding = loadBinding();
    expect(binding.abiVersion).toBe(ABI_VERSION);
    const paths = binding.availablePaths();
    expect(paths[0]).toBe("scalar");
    // What device-probe expects must be what the addon's own cpuid check offers.
    expect(paths).toContain(expectedKernelPath());
  });

  it("searches an explicit path first, then the prebuild, then build/Release", () => {
    const candidates = bindingCandidates("/explicit/addon.node");
    expect(candidates.map(([label]) => label)).toEqual([
      "explicit path",
      "prebuild",
      "build/Release",
    ]);
    expect(candidates[0]![1]).toBe("/explicit/addon.node");
    expect(candidates[1]![1]).toContain(
      path.join("prebuilds", `${process.platform}-${process.arch}`),
    );
  });

  it("falls through a missing explicit path to the next candidate", () => {
    expect(loadBinding("/nonexistent/bitnet_kernels_cpu.node").abiVersion).toBe(ABI_VERSION);
  });

  it("fails with one typed error that lists every attempt and the fix", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loader-"));
    const garbage = path.join(dir, "bitnet_kernels_cpu.node");
    fs.writeFileSync(garbage, "not a shared object");
    try {
      let caught: unknown;
      try {
        loadBindingFrom([
          ["explicit path", "/nonexistent/a.node"],
          ["prebuild", garbage],
          ["build/Release", undefined],
        ]);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(KernelUnavailableError);
      expect(isBitnetError(caught) && caught.code).toBe("KERNEL_UNAVAILABLE");
      const message = (caught as Error).message;
      expect(message).toContain("explicit path: /nonexistent/a.node (not found)");
      expect(message).toMatch(/prebuild: .*bitnet_kernels_cpu\.node \(.+\)/);
      expect(message).toContain("build:native");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
