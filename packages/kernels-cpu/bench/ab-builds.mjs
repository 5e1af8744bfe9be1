// What bench/ab-addons.mjs and bench/ab-prefill.mjs share: their command line
// (<model.gguf> <kernel path> <rounds> <a.node> <b.node> [...]) and one model per build of the
// addon, each on its own mapping of the same file. Run `pnpm build` in packages/engine-core and
// in this package first.
import * as path from "node:path";
import { loadModel, registerBackend } from "../../engine-core/dist/index.js";
import { loadBindingFrom } from "../dist/index.js";

registerBackend("cpu", () => import("../dist/index.js"));

/**
 * Parses the command line of `script` and loads the model once per build named on it, with
 * room for `contextLength` positions. Exits with the usage on a short command line, and throws
 * (naming the file) when a build is not loadable as itself: the backend falls back to this
 * package's own build when an addon path is stale (another ABI), and the comparison would then
 * time one build twice.
 */
export async function openBuilds(script, contextLength) {
  const [file, kernelPath, rounds, ...addons] = process.argv.slice(2);
  if (file === undefined || kernelPath === undefined || addons.length < 1) {
    console.error(`usage: ${script} <model.gguf> <kernel path> <rounds> <a.node> <b.node> [...]`);
    process.exit(2);
  }
  for (const addon of addons) {
    loadBindingFrom([["build", path.resolve(addon)]]);
  }
  const threads = Number(process.env.THREADS ?? 2);
  const names = addons.map((a) => path.basename(a, ".node"));
  const models = [];
  for (const addon of addons) {
    models.push(
      await loadModel(file, {
        backend: "cpu",
        contextLength,
        backendOptions: { cpu: { threads, kernelPath, addonPath: path.resolve(addon) } },
      }),
    );
  }
  return { file, kernelPath, rounds: Number(rounds), threads, names, models };
}
