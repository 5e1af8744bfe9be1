// What bench/ab-addons.mjs and bench/ab-prefill.mjs share: their command line
// (<model.gguf> <kernel path> <rounds> <a.node> <b.node> [...]) and one model per build of the
// addon, each on its own mapping of the same file. A build may carry environment variables that
// are set while its model loads, `a.node:BITNET_DECODE_FUSE=0[,NAME=value]`, so one build can be
// compared with itself under a setting the addon reads per model (not the decode prefetch
// variables, which it reads once per process); BITNET_KERNEL_PATH there overrides the kernel path
// for that build, so two paths can take turns. Run `pnpm build` in packages/engine-core and in
// this package first.
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
  const builds = addons.map((arg) => {
    const [addon, settings = ""] = arg.split(/:(?=[A-Z_][A-Z0-9_]*=)/);
    const env = settings === "" ? [] : settings.split(",").map((kv) => kv.split("="));
    return {
      addon: path.resolve(addon),
      env,
      name: `${path.basename(addon, ".node")}${settings ? `[${settings}]` : ""}`,
    };
  });
  for (const { addon } of builds) {
    loadBindingFrom([["build", addon]]);
  }
  const threads = Number(process.env.THREADS ?? 2);
  const names = builds.map((b) => b.name);
  const models = [];
  for (const { addon, env } of builds) {
    const saved = env.map(([k]) => [k, process.env[k]]);
    for (const [k, v] of env) {
      process.env[k] = v;
    }
    try {
      models.push(
        await loadModel(file, {
          backend: "cpu",
          contextLength,
          backendOptions: {
            cpu: {
              threads,
              kernelPath: process.env["BITNET_KERNEL_PATH"] ?? kernelPath,
              addonPath: addon,
            },
          },
        }),
      );
    } finally {
      for (const [k, v] of saved) {
        if (v === undefined) {
          delete process.env[k];
        } else {
          process.env[k] = v;
        }
      }
    }
  }
  return { file, kernelPath, rounds: Number(rounds), threads, names, models };
}

/**
 * For each model, a sequence filled with `depth` tokens (in 512-token prompt steps, transient)
 * whose forks the measurements continue, or undefined when depth is 0. Each model is one build,
 * and all fill the same tokens.
 */
export async function fillBaseSequences(models, depth) {
  const bases = [];
  for (const model of models) {
    if (depth === 0) {
      bases.push(undefined);
      continue;
    }
    const vocab = model.description.hparams.vocabSize;
    const base = model.createSequence();
    for (let p = 0; p < depth; p += 512) {
      const n = Math.min(512, depth - p);
      const fill = Array.from(
        { length: n },
        (_, i) => 1000 + (((p + i) * 104729) % (vocab - 1000)),
      );
      await model.step([{ sequence: base, tokens: fill, logits: "last", transient: true }]);
    }
    bases.push(base);
  }
  return bases;
}

/** A fresh sequence of build i, or a fork of its base sequence when it has one. */
export function sequenceFor(models, bases, i) {
  return bases[i] === undefined ? models[i].createSequence() : models[i].forkSequence(bases[i]);
}
