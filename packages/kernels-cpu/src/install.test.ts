/**
 * The install hook's choice (scripts/install.mjs), run in a scratch copy of the package whose
 * build-native.mjs is a stand-in that records that it was called: a prebuild that loads here is
 * used and nothing compiles; one that does not load, a missing one, or an explicit request
 * compiles from source, each saying why.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { bindingCandidates } from "./loader";

const pkg = path.resolve(import.meta.dirname, "..");
const target = `${process.platform}-${process.arch}`;
const scratchDirs: string[] = [];

afterEach(() => {
  for (const dir of scratchDirs.splice(0)) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A scratch package: install.mjs, addon.cc (its ABI), a stand-in compiler, and the given prebuild. */
function scratchPackage(prebuild: "working" | "broken" | "none"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kernels-cpu-install-"));
  scratchDirs.push(dir);
  fs.mkdirSync(path.join(dir, "scripts"));
  fs.mkdirSync(path.join(dir, "native"));
  fs.copyFileSync(
    path.join(pkg, "scripts", "install.mjs"),
    path.join(dir, "scripts", "install.mjs"),
  );
  fs.copyFileSync(path.join(pkg, "native", "addon.cc"), path.join(dir, "native", "addon.cc"));
  fs.writeFileSync(
    path.join(dir, "scripts", "build-native.mjs"),
    'import * as fs from "node:fs";\nfs.writeFileSync(new URL("../compiled", import.meta.url), process.argv.slice(2).join(" "));\n',
  );
  if (prebuild !== "none") {
    const dest = path.join(dir, "prebuilds", target, "bitnet_kernels_cpu.node");
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const built = bindingCandidates().find(([label]) => label === "build/Release")![1]!;
    if (prebuild === "working") {
      fs.copyFileSync(built, dest);
    } else {
      fs.writeFileSync(dest, "not a shared object");
    }
  }
  return dir;
}

function install(
  dir: string,
  env: Record<string, string> = {},
): { out: string; compiled: boolean } {
  const clean = { ...process.env };
  delete clean["npm_config_build_from_source"];
  delete clean["BITNET_BUILD_FROM_SOURCE"];
  const r = spawnSync(process.execPath, [path.join(dir, "scripts", "install.mjs")], {
    encoding: "utf8",
    env: { ...clean, ...env },
  });
  expect(r.status, r.stderr).toBe(0);
  return { out: r.stdout + r.stderr, compiled: fs.existsSync(path.join(dir, "compiled")) };
}

describe("the install hook", () => {
  it("uses a prebuild that loads here and compiles nothing", () => {
    const { out, compiled } = install(scratchPackage("working"));
    expect(out).toContain(`using the prebuilt addon prebuilds/${target}/bitnet_kernels_cpu.node`);
    expect(compiled).toBe(false);
  });

  it("compiles when the prebuild does not load, saying why", () => {
    const { out, compiled } = install(scratchPackage("broken"));
    expect(out).toMatch(
      new RegExp(`compiling the native addon \\(the ${target} prebuild does not load here`),
    );
    expect(compiled).toBe(true);
  });

  it("compiles when there is no prebuild for this platform", () => {
    const { out, compiled } = install(scratchPackage("none"));
    expect(out).toContain(`compiling the native addon (no prebuild for ${target} in this package)`);
    expect(compiled).toBe(true);
  });

  it.each([
    ["npm install --build-from-source", { npm_config_build_from_source: "true" }],
    ["BITNET_BUILD_FROM_SOURCE=1", { BITNET_BUILD_FROM_SOURCE: "1" }],
  ])("compiles when asked (%s), even with a working prebuild", (_, env) => {
    const { out, compiled } = install(scratchPackage("working"), env);
    expect(out).toContain("compiling the native addon (a build from source was asked for)");
    expect(compiled).toBe(true);
  });
});
