/** `bitnet crossval`: compare our engine with llama.cpp (node-llama-cpp) on the same GGUF. */
import * as fs from "node:fs";
import type { BackendName } from "@bitnet-ts/engine-core";
import { CliInputError } from "../errors";
import type { CliIo } from "../program";
import { readTextFile } from "./tokenize";

export interface CrossvalCliOptions {
  model?: string;
  file?: string;
  nPredict?: number;
  json?: boolean;
  backend?: BackendName;
  threads?: number;
}

/** Default prompts when no -f is given. */
const PROMPTS = [
  "The capital of France is",
  "Once upon a time, there was a little",
  "def fibonacci(n):",
  "In 1969, the first humans landed on",
];

export async function runCrossval(options: CrossvalCliOptions, io: CliIo): Promise<void> {
  if (options.model === undefined) {
    throw new CliInputError(
      "could not cross-validate - give the model with -m model.gguf (llama.cpp must be able to load it: TQ1_0/TQ2_0, not I2_S).",
    );
  }
  if (!fs.existsSync(options.model)) {
    throw new CliInputError(`could not cross-validate - "${options.model}" does not exist.`);
  }
  const prompts =
    options.file === undefined
      ? PROMPTS
      : readTextFile(options.file)
          .split("\n")
          .filter((l) => l.trim().length > 0);
  if (prompts.length === 0) {
    throw new CliInputError("could not cross-validate - the prompt file has no non-empty lines.");
  }
  // Loaded lazily: node-llama-cpp is optional and heavy.
  const { crossvalidate, formatReport } = await import("@bitnet-ts/crossval");
  const ours = options.backend ?? "reference";
  const report = await crossvalidate(options.model, prompts, {
    nTokens: options.nPredict ?? 32,
    backends: ours === "reference-f64" ? ["reference-f64"] : [ours, "reference-f64"],
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    onProgress: (line) => {
      if (!options.json) {
        io.stderr(`crossval: ${line}\n`);
      }
    },
  });
  io.stdout(options.json ? `${JSON.stringify(report)}\n` : `${formatReport(report)}\n`);
}
