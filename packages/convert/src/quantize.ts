/**
 * GGUF → GGUF between the ternary types (I2_S, TQ2_0, TQ1_0) and between embedding types. The
 * ternary values are carried over exactly; scales are carried over exactly or the conversion is
 * refused (LOSSY) unless `allowLossy`: I2_S holds one f32 scale per tensor, TQ types one f16
 * scale per 256-block.
 */
import { GgufWriter, gguf, readGgufFile, type WriteProgress } from "@bitnet-ts/gguf";
import {
  decodeBf16,
  decodeF16,
  decodeF32,
  dequantizeQ6_K,
  dequantizeQ8_0,
  f16ToF32,
  f32ToF16,
  packTQ1_0,
  packTQ2_0,
  unpackI2S,
  unpackTQ1_0,
  unpackTQ2_0,
} from "@bitnet-ts/quantization";
import {
  type EmbeddingType,
  encodeEmbedding,
  FILE_TYPE,
  packTernary,
  type TernaryType,
} from "./convert";
import { ConvertError, ConvertErrorCode } from "./errors";

export interface QuantizeOptions {
  /** Target type of the ternary projections (default: keep). */
  readonly type?: TernaryType;
  /** Target type of token_embd (and an untied output): default keep. */
  readonly embed?: EmbeddingType;
  /** Round scales that the target type cannot hold exactly instead of refusing. */
  readonly allowLossy?: boolean;
  readonly onProgress?: WriteProgress;
}

/** An embedding (or untied output) re-encoded to another type, and what that cost. */
export interface EmbeddingChange {
  readonly name: string;
  readonly from: string;
  readonly to: EmbeddingType;
  /** Largest |new − old| of any value (0: the values survived exactly). */
  readonly maxAbsError: number;
  /** √(Σ (new − old)² / Σ old²): the error relative to the values' size. */
  readonly relativeRmsError: number;
}

export interface QuantizeSummary {
  readonly converted: number;
  /** Largest relative change of any ternary scale (0 when the ternary tensors are exact). */
  readonly maxScaleChange: number;
  /** Every re-encoded embedding with its error (lossy unless maxAbsError is 0). */
  readonly embeddings: readonly EmbeddingChange[];
}

/** Elements and bytes per block of each embedding type. */
const EMBEDDING_BLOCK: Readonly<Record<EmbeddingType, readonly [number, number]>> = {
  F16: [1, 2],
  F32: [1, 4],
  Q8_0: [32, 34],
  Q6_K: [256, 210],
};

/**
 * How far `encoded` (of `type`) decodes from `original`, decoded a slice at a time so that a
 * large vocabulary's embedding is not held twice in f32.
 */
function encodingError(
  type: EmbeddingType,
  encoded: Uint8Array,
  original: Float32Array,
): { maxAbsError: number; relativeRmsError: number } {
  const [blockElements, blockBytes] = EMBEDDING_BLOCK[type];
  const step = blockElements * 8192;
  let maxAbsError = 0;
  let squaredError = 0;
  let squaredValue = 0;
  for (let start = 0; start < original.length; start += step) {
    const n = Math.min(step, original.length - start);
    const decoded = floats(
      type,
      encoded.subarray(
        (start / blockElements) * blockBytes,
        ((start + n) / blockElements) * blockBytes,
      ),
      n,
    );
    for (let i = 0; i < n; i++) {
      const x = original[start + i]!;
      const d = decoded[i]! - x;
      maxAbsError = Math.max(maxAbsError, Math.abs(d));
      squaredError += d * d;
      squaredValue += x * x;
    }
  }
  return {
    maxAbsError,
    relativeRmsError: squaredValue > 0 ? Math.sqrt(squaredError / squaredValue) : 0,
  };
}

const TERNARY = new Set(["I2_S", "TQ2_0", "TQ1_0"]);

function unpack(
  type: string,
  bytes: Uint8Array,
  n: number,
): { values: Int8Array; blockScales: Float32Array | undefined; scale: number | undefined } {
  if (type === "I2_S") {
    const { values, scale } = unpackI2S(bytes, n);
    return { values, blockScales: undefined, scale };
  }
  const { values, scales } = type === "TQ2_0" ? unpackTQ2_0(bytes, n) : unpackTQ1_0(bytes, n);
  return { values, blockScales: scales, scale: undefined };
}

function floats(type: string, bytes: Uint8Array, n: number): Float32Array {
  switch (type) {
    case "F32":
      return decodeF32(bytes, new Float32Array(n));
    case "F16":
      return decodeF16(bytes, new Float32Array(n));
    case "BF16":
      return decodeBf16(bytes, new Float32Array(n));
    case "Q8_0":
      return dequantizeQ8_0(bytes, n);
    case "Q6_K":
      return dequantizeQ6_K(bytes, n);
    default:
      throw new ConvertError(
        ConvertErrorCode.BAD_OPTION,
        `could not requantize the embedding - type ${type} cannot be decoded.`,
      );
  }
}

export async function quantizeGguf(
  inPath: string,
  outPath: string,
  options: QuantizeOptions,
): Promise<QuantizeSummary> {
  if (options.type === undefined && options.embed === undefined) {
    throw new ConvertError(
      ConvertErrorCode.BAD_OPTION,
      "could not requantize - give a target type, an embedding type, or both.",
    );
  }
  const file = await readGgufFile(inPath, { tensorData: true });
  const w = new GgufWriter({ alignment: file.alignment });
  w.setAll(file.metadata);
  let converted = 0;
  let maxScaleChange = 0;
  const embeddings: EmbeddingChange[] = [];
  const target = options.type;
  for (const t of file.tensors) {
    const bytes = file.tensorData(t);
    const n = t.elementCount;
    if (target !== undefined && TERNARY.has(t.type.name) && t.type.name !== target) {
      const { values, blockScales, scale } = unpack(t.type.name, bytes, n);
      let tensorScale: number;
      if (scale !== undefined) {
        tensorScale = scale; // I2_S → TQ: the f32 scale must be an f16 value
        const asF16 = f16ToF32(f32ToF16(scale));
        if (asF16 !== scale) {
          if (!options.allowLossy) {
            throw new ConvertError(
              ConvertErrorCode.LOSSY,
              `could not convert ${t.name} to ${target} losslessly - its I2_S scale ${scale} is not representable in f16 (nearest ${asF16}); pass --allow-lossy to round it.`,
            );
          }
          maxScaleChange = Math.max(maxScaleChange, Math.abs(asF16 - scale) / Math.abs(scale));
        }
      } else {
        const nonzero = [
          ...new Set(
            [...blockScales!].filter((_, b) =>
              values.subarray(256 * b, 256 * b + 256).some((v) => v !== 0),
            ),
          ),
        ];
        tensorScale = nonzero[0] ?? 0;
        if (nonzero.length > 1 && target === "I2_S") {
          if (!options.allowLossy) {
            throw new ConvertError(
              ConvertErrorCode.LOSSY,
              `could not convert ${t.name} to I2_S losslessly - its blocks have ${nonzero.length} different scales and I2_S holds one per tensor; pass --allow-lossy to use their mean.`,
            );
          }
          tensorScale = Math.fround(nonzero.reduce((a, b) => a + b, 0) / nonzero.length);
          for (const s of nonzero) {
            maxScaleChange = Math.max(maxScaleChange, Math.abs(s - tensorScale) / Math.abs(s));
          }
        }
        if (nonzero.length > 1 && target !== "I2_S") {
          // TQ → TQ: keep every block's own scale.
          const out =
            target === "TQ2_0" ? packTQ2_0(values, blockScales!) : packTQ1_0(values, blockScales!);
          w.addTensor(t.name, target, t.shape, out);
          converted++;
          continue;
        }
      }
      w.addTensor(t.name, target, t.shape, packTernary(target, { values, scale: tensorScale }));
      converted++;
      continue;
    }
    if (
      options.embed !== undefined &&
      (t.name === "token_embd.weight" || t.name === "output.weight") &&
      t.type.name !== options.embed
    ) {
      const values = floats(t.type.name, bytes, n);
      const encoded = encodeEmbedding(options.embed, values);
      embeddings.push({
        name: t.name,
        from: t.type.name,
        to: options.embed,
        ...encodingError(options.embed, encoded, values),
      });
      w.addTensor(t.name, options.embed, t.shape, encoded);
      converted++;
      continue;
    }
    w.addTensor(t.name, t.type, t.shape, bytes);
  }
  if (target !== undefined) {
    w.set("general.file_type", gguf.uint32(FILE_TYPE[target]));
  }
  await w.writeFile(
    outPath,
    options.onProgress === undefined ? {} : { onProgress: options.onProgress },
  );
  return { converted, maxScaleChange, embeddings };
}
