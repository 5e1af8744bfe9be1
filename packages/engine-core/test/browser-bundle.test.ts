/**
 * The browser-safe packages bundle for the browser with no Node builtin: each package is bundled
 * with esbuild the way a web app's bundler would (platform "browser", the "browser" export
 * condition), and every import esbuild resolves, from the package and its dependencies, is
 * checked. Once from source (the "source" condition, no build needed) and once from the built
 * dist (what npm users get; run after `turbo run build`).
 */
import * as fs from "node:fs";
import { builtinModules } from "node:module";
import * as path from "node:path";
import { build, type Plugin } from "esbuild";
import { describe, expect, it } from "vitest";

const PACKAGES = ["gguf", "quantization", "tokenizers", "engine-core", "logits", "generation"];
const ROOT = path.resolve(import.meta.dirname, "../../..");

const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/**
 * Node globals that bundlers do not polyfill: a reference fails only when the code runs. A use
 * right after a `typeof` check of the same global is a guarded fallback and allowed.
 */
const NODE_GLOBALS =
  /\b(?:Buffer\.(?:from|alloc|allocUnsafe|byteLength|concat|compare|isBuffer)|setImmediate\(|__dirname|__filename|require\(|process\.(?:env|platform|arch|version|versions|pid|cwd|stdout|stderr|nextTick|hrtime|memoryUsage|exit))/g;

function nodeGlobals(code: string): string[] {
  return [...code.matchAll(NODE_GLOBALS)]
    .filter((m) => {
      const name = /^[\w$]+/.exec(m[0])![0];
      return !code.slice(Math.max(0, m.index - 80), m.index).includes(`typeof ${name}`);
    })
    .map((m) => `${m[0]} in …${code.slice(Math.max(0, m.index - 50), m.index + 30)}…`);
}

function isBuiltin(specifier: string): boolean {
  return specifier.startsWith("node:") || BUILTINS.has(specifier.split("/")[0]!);
}

interface BundleReport {
  /** "specifier (imported by file)" for every Node builtin the bundle asked for. */
  readonly builtins: string[];
  /** esbuild's errors (e.g. a builtin it could not resolve). */
  readonly errors: string[];
  /** What was left outside the bundle. */
  readonly external: string[];
  /** Node-only globals referenced in the bundled code, with context. */
  readonly globals: string[];
  readonly exports: string[];
  readonly bytes: number;
}

async function bundle(
  name: string,
  options: { from: "source" | "dist"; platform?: "browser" | "node" },
): Promise<BundleReport> {
  const builtins: string[] = [];
  // Records every import before esbuild resolves it, so a builtin is caught whether esbuild
  // then fails, marks it external, or swaps in an empty module for a "browser" field's false.
  const watch: Plugin = {
    name: "record-builtins",
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (isBuiltin(args.path)) {
          builtins.push(`${args.path} (imported by ${path.relative(ROOT, args.importer)})`);
        }
        return undefined;
      });
    },
  };
  const packageDir = path.join(ROOT, "packages", name);
  try {
    const result = await build({
      // The package imports itself by name (esbuild resolves a package's self-reference through
      // its own "exports"), so the export conditions are exercised as an app would see them.
      stdin: {
        contents: `export * from "@bitnet-ts/${name}";`,
        resolveDir: packageDir,
        loader: "js",
      },
      bundle: true,
      write: false,
      format: "esm",
      platform: options.platform ?? "browser",
      conditions: options.from === "source" ? ["source"] : [],
      minify: true, // drops comments, so the globals scan sees code only
      metafile: true,
      logLevel: "silent",
      plugins: [watch],
    });
    const output = Object.values(result.metafile.outputs)[0]!;
    const text = result.outputFiles[0]!.text;
    return {
      builtins,
      errors: [],
      external: output.imports.filter((i) => i.external).map((i) => i.path),
      globals: nodeGlobals(text),
      exports: [...output.exports].sort(),
      bytes: text.length,
    };
  } catch (error) {
    const errors = (error as { errors?: { text: string }[] }).errors?.map((e) => e.text) ?? [
      String(error),
    ];
    return { builtins, errors, external: [], globals: [], exports: [], bytes: 0 };
  }
}

function expectBrowserSafe(report: BundleReport): void {
  expect({
    builtins: report.builtins,
    errors: report.errors,
    external: report.external,
    globals: report.globals,
  }).toEqual({ builtins: [], errors: [], external: [], globals: [] });
  expect(report.bytes).toBeGreaterThan(0);
}

describe("browser bundles", () => {
  it.each(PACKAGES)("@bitnet-ts/%s bundles from source with no Node builtin", async (name) => {
    expectBrowserSafe(await bundle(name, { from: "source" }));
  });

  it.each(PACKAGES)("@bitnet-ts/%s exports the same names in browsers as in Node", async (name) => {
    const browser = await bundle(name, { from: "source" });
    const node = await bundle(name, { from: "source", platform: "node" });
    expect(node.errors).toEqual([]);
    expect(browser.exports).toEqual(node.exports);
  });

  const built = PACKAGES.filter((name) =>
    fs.existsSync(path.join(ROOT, "packages", name, "dist", "index.js")),
  );
  it.skipIf(built.length < PACKAGES.length)(
    "the built packages bundle with no Node builtin (skipped until `turbo run build`)",
    async () => {
      for (const name of PACKAGES) {
        const report = await bundle(name, { from: "dist" });
        expect({ name, ...report, exports: undefined, bytes: undefined }).toEqual({
          name,
          builtins: [],
          errors: [],
          external: [],
          globals: [],
          exports: undefined,
          bytes: undefined,
        });
      }
    },
  );

  it("catches a Node builtin, as a failed resolve or a global", async () => {
    // The Node entry of gguf (what a browser build must never pick) imports node:fs.
    const node = await bundle("gguf", { from: "source", platform: "node" });
    expect(node.builtins).toContainEqual(expect.stringMatching(/^node:fs \(imported by /));
    const code = "x=Buffer.from(y);setImmediate(f);process.platform";
    expect(nodeGlobals(code).map((hit) => hit.split(" ")[0])).toEqual([
      "Buffer.from",
      "setImmediate(",
      "process.platform",
    ]);
    expect(nodeGlobals('typeof setImmediate=="function"&&setImmediate(f)')).toEqual([]);
  });
});
