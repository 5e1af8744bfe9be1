/** `bitnet convert` (HF checkpoint → GGUF) and `bitnet quantize` (GGUF → GGUF between ternary and embedding types). */
import * as path from "node:path";
import {
  type ConvertArch,
  convertCheckpoint,
  type EmbeddingType,
  quantizeGguf,
  type TernaryType,
} from "@bitnet-ts/convert";
import type { CliIo } from "../program";
import { byteProgress } from "../progress";
import { formatBytes } from "../table";
import { CliInputError } from "./tokenize";

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

export async function runConvert(
  dir: string,
  options: { outfile?: string; type?: string; embed?: string; arch?: ConvertArch },
  io: CliIo,
): Promise<void> {
  const type = ternaryType(options.type ?? "i2_s", "convert")!;
  const embed = embeddingType(options.embed, "convert");
  const out = options.outfile ?? path.join(dir, `ggml-model-${type.toLowerCase()}.gguf`);
  const bar = byteProgress(`converting ${path.basename(path.resolve(dir))}`);
  const started = performance.now();
  try {
    const summary = await convertCheckpoint(dir, out, {
      type,
      ...(embed === undefined ? {} : { embed }),
      ...(options.arch === undefined ? {} : { arch: options.arch }),
      onProgress: bar.update,
    });
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
  const bar = byteProgress(`writing ${path.basename(output)}`);
  try {
    const summary = await quantizeGguf(input, output, {
      ...(type === undefined ? {} : { type }),
      ...(embed === undefined ? {} : { embed }),
      allowLossy: options.allowLossy === true,
      onProgress: bar.update,
    });
    bar.stop();
    io.stderr(
      `bitnet quantize: ${summary.converted} tensors converted → ${output}${summary.maxScaleChange > 0 ? ` (scales changed by up to ${(summary.maxScaleChange * 100).toFixed(4)}%)` : " (lossless)"}\n`,
    );
  } finally {
    bar.stop();
  }
}
