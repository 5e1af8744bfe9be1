/**
 * `bitnet info` tells the truth: a backend is "available" only when its package loads and can run
 * here (not because a driver lists a GPU), and the CPU kernel path it names is one the addon has.
 */
import { loadBinding } from "@bitnet-ts/kernels-cpu";
import { describe, expect, it } from "vitest";
import { runCli } from "./program";

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

interface InfoJson {
  cuda: { gpuPresent: boolean };
  backends: {
    name: string;
    available: boolean;
    reason?: string;
    description?: { details: Record<string, unknown> };
  }[];
  auto_backend: string;
}

describe("bitnet info", () => {
  it("lists every backend with its availability from really loading it", async () => {
    const { code, stdout } = await run("info", "--json");
    expect(code).toBe(0);
    const info = JSON.parse(stdout) as InfoJson;
    const names = info.backends.map((b) => b.name);
    expect(names).toEqual(["cuda", "webgpu", "cpu", "reference"]);
    // No CUDA backend package is installed in this repository yet: unavailable, whatever the
    // driver reports, and the reason says so.
    const cuda = info.backends.find((b) => b.name === "cuda")!;
    expect(cuda.available).toBe(false);
    expect(cuda.reason).toMatch(/not installed|cannot run here|failed to load/);
    // The CPU backend's kernel path comes from the addon.
    const cpu = info.backends.find((b) => b.name === "cpu")!;
    expect(cpu.available).toBe(true);
    const paths = loadBinding().availablePaths();
    expect(paths).toContain(cpu.description!.details["kernelPath"]);
    expect(cpu.description!.details["kernelPath"]).toBe(paths.at(-1));
    expect(info.auto_backend).toBe("cpu");
  });

  it("prints one line per backend, and which one auto takes", async () => {
    const { code, stdout } = await run("info");
    expect(code).toBe(0);
    expect(stdout).toMatch(/^ {2}cuda {9}unavailable: /m);
    expect(stdout).toMatch(/^ {2}cpu {10}.+\[kernelPath /m);
    expect(stdout).toMatch(/^auto {9}cpu$/m);
  });
});
