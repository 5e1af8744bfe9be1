/**
 * `bitnet info` names the WebGPU adapter Dawn finds. On Linux x64 (Debian, apt-get) that is Mesa's
 * lavapipe ("llvmpipe") from tools/lavapipe/setup.sh, which the test runner and CI run first; its
 * env.json holds the environment that points Dawn's Vulkan loader at it.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, "../dist/bitnet.js");
const ENV_JSON = path.resolve(here, "../../../.cache/lavapipe/env.json");

/** Why tools/lavapipe/setup.sh does not run here (it skips the same machines), if it does not. */
function lavapipeSkip(): string | undefined {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return `lavapipe is set up only on Linux x64 (this is ${process.platform} ${process.arch})`;
  }
  if (spawnSync("sh", ["-c", "command -v apt-get"], { stdio: "ignore" }).status !== 0) {
    return "lavapipe is set up only where apt-get exists";
  }
  const osRelease = fs.existsSync("/etc/os-release")
    ? fs.readFileSync("/etc/os-release", "utf8")
    : "";
  if (!/^ID="?debian"?$/m.test(osRelease)) {
    return "lavapipe is set up only on Debian";
  }
  return undefined;
}

function lavapipeEnv(): Record<string, string> {
  if (!fs.existsSync(ENV_JSON)) {
    throw new Error(
      `${ENV_JSON} is missing: run tools/lavapipe/setup.sh (Mesa's software Vulkan driver for the WebGPU tests)`,
    );
  }
  return JSON.parse(fs.readFileSync(ENV_JSON, "utf8")) as Record<string, string>;
}

function info(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  return bitnet("info", ...args);
}

function bitnet(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...lavapipeEnv() },
    timeout: 300_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const skip = lavapipeSkip();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cli-webgpu-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(skip !== undefined)(
  `bitnet info with lavapipe${skip === undefined ? "" : ` (skipped: ${skip})`}`,
  () => {
    it("names llvmpipe in its WebGPU section with the backend, features and key limits", () => {
      const r = info();
      expect(r.code, r.stderr).toBe(0);
      const section = r.stdout.split("\n\n").find((s) => s.startsWith("webgpu\n"));
      expect(section, r.stdout).toBeDefined();
      expect(section).toMatch(/^ {2}adapter {6}llvmpipe: Mesa \d+\./m);
      expect(section).toMatch(/^ {2}backend {6}vulkan$/m);
      expect(section).toMatch(/^ {2}features {5}.*\bshader-f16\b/m);
      for (const limit of [
        "maxStorageBufferBindingSize",
        "maxBufferSize",
        "maxComputeWorkgroupStorageSize",
        "maxComputeInvocationsPerWorkgroup",
        "maxComputeWorkgroupSizeX",
      ]) {
        expect(section).toMatch(new RegExp(`^ {4}${limit} \\d+`, "m"));
      }
    });

    it("reports the adapter in --json", () => {
      const r = info("--json");
      expect(r.code, r.stderr).toBe(0);
      const { webgpu } = JSON.parse(r.stdout) as {
        webgpu: {
          available: boolean;
          adapter?: { description: string; backendType: string; limits: Record<string, number> };
        };
      };
      expect(webgpu.available).toBe(true);
      expect(webgpu.adapter?.description).toMatch(/^llvmpipe/);
      expect(webgpu.adapter?.backendType).toBe("vulkan");
      expect(webgpu.adapter?.limits["maxComputeInvocationsPerWorkgroup"]).toBeGreaterThan(0);
    });

    it("bitnet run --backend webgpu --temp 0 writes the same text as --backend cpu", {
      timeout: 300_000,
    }, async () => {
      const file = path.join(tmp, "tiny-i2s.gguf");
      await writeFixture(PRESETS["tiny-i2s"]!, file);
      const args = ["run", "-m", file, "-p", "The capital of France is", "-n", "12", "--temp", "0"];
      const gpu = bitnet(...args, "--backend", "webgpu");
      expect(gpu.code, gpu.stderr).toBe(0);
      expect(gpu.stderr).toMatch(/webgpu backend/);
      const cpu = bitnet(...args, "--backend", "cpu");
      expect(cpu.code, cpu.stderr).toBe(0);
      expect(gpu.stdout).toBe(cpu.stdout);
    });
  },
);
