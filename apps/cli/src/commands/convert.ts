/** `bitnet convert` (HF checkpoint → GGUF) and `bitnet quantize` (GGUF → GGUF between ternary and embedding types). */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  type ConvertArch,
  convertCheckpoint,
  type EmbeddingType,
  quantizeGguf,
  type TernaryType,
} from "@bitnet-ts/convert";
import { isBitnetError } from "@bitnet-ts/errors";
import { CliInputError } from "../errors";
import { checkOutputPath, describeFsError } from "../output-file";
import type { CliIo } from "../program";
import { byteProgress } from "../progress";
import { formatBytes } from "../table";

const TYPES: Readonly<Record<string, TernaryType>> = {
  i2_s: "I2_S",
  tq2_0: "TQ2_0",
  tq1_0: "TQ1_0",
};
const EMBEDS: Readonly<Record<string, EmbeddingType>> = {
  f16: "F16",
  f32: "F32",
  q8_0: "Q8_0",
  q6_k: "Q6_K",
};

function ternaryType(value: string | undefined, what: string): TernaryType | undefined {
  if (value === undefined) {
    return undefined;
  }
  const t = TYPES[value.toLowerCase()];
  if (t === undefined) {
    throw new CliInputError(
      `could not ${what} - type "${value}" is not one of i2_s, tq2_0, tq1_0.`,
    );
  }
  return t;
}

function embeddingType(value: string | undefined, what: string): EmbeddingType | undefined {
  if (value === undefined) {
    return undefined;
  }
  const t = EMBEDS[value.toLowerCase()];
  if (t === undefined) {
    throw new CliInputError(
      `could not ${what} - --embed "${value}" is not one of f16, f32, q8_0, q6_k.`,
    );
  }
  return t;
}

/** Rethrows a file system error (a full disk, a folder removed meanwhile) in words. */
function writeFailure(file: string, flag: string): (error: unknown) => never {
  return (error: unknown): never => {
    if (typeof (error as NodeJS.ErrnoException)?.code === "string" && !isBitnetError(error)) {
      throw new CliInputError(`could not write ${flag} ${file} - ${describeFsError(error)}.`);
    }
    throw error;
  };
}

export async function runConvert(
  dir: string,
  options: { outfile?: string; type?: string; embed?: string; arch?: ConvertArch },
  io: CliIo,
): Promise<void> {
  const type = ternaryType(options.type ?? "i2_s", "convert")!;
  const embed = embeddingType(options.embed, "convert");
  const out = options.outfile ?? path.join(dir, `ggml-model-${type.toLowerCase()}.gguf`);
  if (fs.existsSync(dir)) {
    // (A missing checkpoint folder is reported as such by the converter.)
    checkOutputPath(out, "--outfile");
  }
  const bar = byteProgress(`converting ${path.basename(path.resolve(dir))}`);
  const started = performance.now();
  try {
    const summary = await convertCheckpoint(dir, out, {
      type,
      ...(embed === undefined ? {} : { embed }),
      ...(options.arch === undefined ? {} : { arch: options.arch }),
      onProgress: bar.update,
    }).catch(writeFailure(out, "--outfile"));
    bar.stop();
    for (const note of summary.notes) {
      io.stderr(`bitnet convert: note: ${note}\n`);
    }
    io.stderr(
      `bitnet convert: ${summary.layout} checkpoint → ${out} (${summary.arch}, ${summary.type}, ${summary.tensors} tensors, ${formatBytes(summary.bytes)}) in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
    );
  } finally {
    bar.stop();
  }
}

export async function runQuantize(
  input: string,
  output: string,
  typeArg: string | undefined,
  options: { embed?: string; allowLossy?: boolean },
  io: CliIo,
): Promise<void> {
  const type = ternaryType(typeArg, "quantize");
  const embed = embeddingType(options.embed, "quantize");
  if (path.resolve(input) === path.resolve(output)) {
    throw new CliInputError(
      "could not quantize - the output would overwrite the input; choose another file.",
    );
  }
  checkOutputPath(output, "output");
  const bar = byteProgress(`writing ${path.basename(output)}`);
  try {
    const summary = await quantizeGguf(input, output, {
      ...(type === undefined ? {} : { type }),
      ...(embed === undefined ? {} : { embed }),
      allowLossy: options.allowLossy === true,
      onProgress: bar.update,
    }).catch(writeFailure(output, "output"));
    bar.stop();
    const notes = [
      ...(type === undefined
        ? []
        : [
            summary.maxScaleChange > 0
              ? `ternary scales changed by up to ${(summary.maxScaleChange * 100).toFixed(4)}%`
              : "ternary weights exact",
          ]),
      ...summary.embeddings.map((e) =>
        e.maxAbsError === 0
          ? `${e.name} ${e.from} → ${e.to} exact`
          : `${e.name} ${e.from} → ${e.to} lossy: max |Δ| ${e.maxAbsError.toPrecision(3)}, relative RMS error ${(e.relativeRmsError * 100).toFixed(3)}%`,
      ),
    ];
    io.stderr(
      `bitnet quantize: ${summary.converted} tensors converted → ${output}${notes.length > 0 ? ` (${notes.join("; ")})` : ""}\n`,
    );
  } finally {
    bar.stop();
  }
}
