/**
 * Weights in the layouts the CUDA kernels read, built once on the host at compile time.
 *
 * - I2_S: the file's code bytes as they are. Its 128-element blocks put four consecutive
 *   elements in each 2-bit field of a 32-bit word, which is a dp4a operand after one shift and
 *   one mask, so no repack is needed (the tensor's single scale travels beside it).
 * - TQ2_0: the 64 code bytes of each 66-byte block, the f16 block scales moved out to their own
 *   f32 array (rows × cols/256), so every code word is 4-byte aligned.
 * - TQ1_0: unpacked from base 3 and packed as TQ2_0 codes (lossless: the values are the same).
 * - Float tables and projections: F16 stays F16; every other float type (F32, BF16, Q8_0, Q6_K,
 *   Q4_0) is dequantized to f32 with the reference's own dequantizers, so the head computes on
 *   exactly the values the reference does.
 */
import {
  type BoundTensor,
  decodeFloats,
  EngineError,
  EngineErrorCode,
} from "@bitnet-ts/engine-core";
import {
  f16ToF32,
  i2sScale,
  packTQ2Codes,
  TQ2_0_BLOCK,
  TQ2_0_BYTES,
  unpackTQ1_0,
} from "@bitnet-ts/quantization";

/** The native weight kinds (model.h's WeightKind). */
export const WeightKind = { I2S: 0, TQ2: 1, F16: 2, F32: 3, Scalar: 4 } as const;

export interface DeviceWeight {
  readonly kind: number;
  readonly rows: number;
  readonly cols: number;
  readonly bytes: Uint8Array | null;
  readonly scales: Float32Array | null;
  readonly scalar: number;
  /** The type tag of the kernel ids that run it ("i2_s", "tq2_0", "tq1_0_as_tq2_0", "f16", …). */
  readonly tag: string;
}

export const TERNARY_TYPES: ReadonlySet<string> = new Set(["I2_S", "TQ2_0", "TQ1_0"]);

function shapeOf(t: BoundTensor): { rows: number; cols: number } {
  const cols = t.info.shape[0] ?? 1;
  return { rows: t.info.elementCount / cols, cols };
}

export function ternaryWeight(t: BoundTensor, data: Uint8Array): DeviceWeight {
  const { rows, cols } = shapeOf(t);
  const n = t.info.elementCount;
  const type = t.info.type.name;
  const block = type === "I2_S" ? 128 : 256;
  if (cols % block !== 0) {
    throw new EngineError(
      EngineErrorCode.BAD_TENSOR_SHAPE,
      `could not upload tensor "${t.info.name}" - the CUDA kernels need ${type} rows of a multiple of ${block} values, it has ${cols}.`,
    );
  }
  switch (type) {
    case "I2_S":
      return {
        kind: WeightKind.I2S,
        rows,
        cols,
        bytes: data.subarray(0, n / 4),
        scales: null,
        scalar: i2sScale(data, n),
        tag: "i2_s",
      };
    case "TQ2_0": {
      const nb = n / TQ2_0_BLOCK;
      const bytes = new Uint8Array(nb * 64);
      const scales = new Float32Array(nb);
      for (let b = 0; b < nb; b++) {
        const at = b * TQ2_0_BYTES;
        bytes.set(data.subarray(at, at + 64), 64 * b);
        scales[b] = f16ToF32(data[at + 64]! | (data[at + 65]! << 8));
      }
      return { kind: WeightKind.TQ2, rows, cols, bytes, scales, scalar: 1, tag: "tq2_0" };
    }
    case "TQ1_0": {
      const { values, scales } = unpackTQ1_0(data, n);
      return {
        kind: WeightKind.TQ2,
        rows,
        cols,
        bytes: packTQ2Codes(values),
        scales,
        scalar: 1,
        tag: "tq1_0_as_tq2_0",
      };
    }
    default:
      throw new EngineError(
        EngineErrorCode.BAD_TENSOR_TYPE,
        `could not upload tensor "${t.info.name}" - ${type} is not a ternary type.`,
      );
  }
}

/** A float table or projection: F16 as it is, anything else as f32 values. */
export function floatWeight(t: BoundTensor, data: Uint8Array): DeviceWeight {
  const { rows, cols } = shapeOf(t);
  if (t.info.type.name === "F16") {
    const bytes = data.byteOffset % 2 === 0 ? data : data.slice();
    return { kind: WeightKind.F16, rows, cols, bytes, scales: null, scalar: 1, tag: "f16" };
  }
  const floats = decodeFloats(t.info, data);
  return {
    kind: WeightKind.F32,
    rows,
    cols,
    bytes: new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength),
    scales: null,
    scalar: 1,
    tag: t.info.type.name.toLowerCase(),
  };
}

/** A norm's weights as f32 (one row). */
export function vectorWeight(t: BoundTensor, data: Uint8Array): DeviceWeight {
  const floats = decodeFloats(t.info, data);
  return {
    kind: WeightKind.F32,
    rows: 1,
    cols: floats.length,
    bytes: new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength),
    scales: null,
    scalar: 1,
    tag: "f32",
  };
}

/** A scalar tensor (a projection's output scale). */
export function scalarWeight(t: BoundTensor, data: Uint8Array): DeviceWeight {
  const value = decodeFloats(t.info, data)[0] ?? 1;
  return {
    kind: WeightKind.Scalar,
    rows: 0,
    cols: 0,
    bytes: null,
    scales: null,
    scalar: value,
    tag: "f32",
  };
}
