/**
 * The ggml tensor type table: id, name, block size (elements) and bytes per block.
 *
 * Ids follow mainline ggml (`enum ggml_type` in ggml.h) except 36, which bitnet.cpp's fork
 * uses for I2_S (mainline retired 36 as IQ4_NL_4_4). Ids the fork and mainline disagree on
 * beyond that (37..39: I8_S / TL1 / TL2 vs. mainline's removed repack types and MXFP4) are left
 * out on purpose: a file using them gets a clear "unknown type" error instead of a guess.
 */
export interface GgmlTypeInfo {
  /** The numeric id stored in a GGUF tensor info. */
  readonly id: number;
  /** ggml's name for the type, e.g. `"TQ2_0"`. */
  readonly name: GgmlTypeName;
  /** Elements per block; a row's length (ne0) must be a multiple of it. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
  /**
   * Bytes a tensor carries beyond its blocks. Only I2_S has any: a 32-byte tail holding its
   * single f32 scale (plus padding), so an I2_S tensor of N elements takes N/4 + 32 bytes.
   */
  readonly tensorTailBytes: number;
  /** True for types that only exist as activations and never appear in files (Q8_K). */
  readonly activationOnly?: boolean;
}

export type GgmlTypeName =
  | "F32"
  | "F16"
  | "Q4_0"
  | "Q4_1"
  | "Q5_0"
  | "Q5_1"
  | "Q8_0"
  | "Q8_1"
  | "Q2_K"
  | "Q3_K"
  | "Q4_K"
  | "Q5_K"
  | "Q6_K"
  | "Q8_K"
  | "IQ2_XXS"
  | "IQ2_XS"
  | "IQ3_XXS"
  | "IQ1_S"
  | "IQ4_NL"
  | "IQ3_S"
  | "IQ2_S"
  | "IQ4_XS"
  | "I8"
  | "I16"
  | "I32"
  | "I64"
  | "F64"
  | "IQ1_M"
  | "BF16"
  | "TQ1_0"
  | "TQ2_0"
  | "I2_S";

function row(
  id: number,
  name: GgmlTypeName,
  blockSize: number,
  typeSize: number,
  extra: { tensorTailBytes?: number; activationOnly?: boolean } = {},
): GgmlTypeInfo {
  return Object.freeze({ id, name, blockSize, typeSize, tensorTailBytes: 0, ...extra });
}

/** Every ggml type this package knows, in id order. Sizes from ggml-common.h's block structs. */
export const GGML_TYPES: readonly GgmlTypeInfo[] = Object.freeze([
  row(0, "F32", 1, 4),
  row(1, "F16", 1, 2),
  row(2, "Q4_0", 32, 18),
  row(3, "Q4_1", 32, 20),
  row(6, "Q5_0", 32, 22),
  row(7, "Q5_1", 32, 24),
  row(8, "Q8_0", 32, 34),
  row(9, "Q8_1", 32, 36),
  row(10, "Q2_K", 256, 84),
  row(11, "Q3_K", 256, 110),
  row(12, "Q4_K", 256, 144),
  row(13, "Q5_K", 256, 176),
  row(14, "Q6_K", 256, 210),
  row(15, "Q8_K", 256, 292, { activationOnly: true }),
  row(16, "IQ2_XXS", 256, 66),
  row(17, "IQ2_XS", 256, 74),
  row(18, "IQ3_XXS", 256, 98),
  row(19, "IQ1_S", 256, 50),
  row(20, "IQ4_NL", 32, 18),
  row(21, "IQ3_S", 256, 110),
  row(22, "IQ2_S", 256, 82),
  row(23, "IQ4_XS", 256, 136),
  row(24, "I8", 1, 1),
  row(25, "I16", 1, 2),
  row(26, "I32", 1, 4),
  row(27, "I64", 1, 8),
  row(28, "F64", 1, 8),
  row(29, "IQ1_M", 256, 56),
  row(30, "BF16", 1, 2),
  row(34, "TQ1_0", 256, 54),
  row(35, "TQ2_0", 256, 66),
  // bitnet.cpp registers I2_S with block size 1, but its x86 packing (the layout of the released
  // 2B-4T file) works in 128-element blocks of 32 bytes, so rows must be multiples of 128.
  row(36, "I2_S", 128, 32, { tensorTailBytes: 32 }),
]);

const BY_ID = new Map<number, GgmlTypeInfo>(GGML_TYPES.map((t) => [t.id, t]));
const BY_NAME = new Map<string, GgmlTypeInfo>(GGML_TYPES.map((t) => [t.name, t]));

/** The type with this id, or undefined if this package does not know it. */
export function findGgmlType(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

/** The type with this name (case-insensitive, e.g. `"tq2_0"`), or undefined. */
export function findGgmlTypeByName(name: string): GgmlTypeInfo | undefined {
  return BY_NAME.get(name.toUpperCase());
}

/**
 * Bytes a tensor of `type` and `shape` (ggml order) occupies, as a bigint so that hostile shapes
 * cannot overflow. Assumes `shape[0]` is a multiple of the block size (callers validate).
 */
export function tensorByteSizeBig(type: GgmlTypeInfo, shape: readonly (number | bigint)[]): bigint {
  let elements = 1n;
  for (const dim of shape) {
    elements *= BigInt(dim);
  }
  return (elements / BigInt(type.blockSize)) * BigInt(type.typeSize) + BigInt(type.tensorTailBytes);
}

/** Bytes a tensor of `type` and `shape` occupies (throws RangeError past 2^53). */
export function tensorByteSize(type: GgmlTypeInfo, shape: readonly number[]): number {
  const size = tensorByteSizeBig(type, shape);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`tensor byte size ${size} exceeds 2^53`);
  }
  return Number(size);
}
