export { QuantizationError } from "./errors";
export {
  bf16ToF32,
  decodeBf16,
  decodeF16,
  decodeF32,
  encodeBf16,
  encodeF16,
  encodeF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  nearestInt,
  roundHalfAwayFromZero,
  roundHalfToEven,
  roundToF16,
} from "./float";
export {
  dequantizeI2S,
  I2S_BLOCK,
  I2S_TAIL_BYTES,
  i2sByteSize,
  i2sScale,
  packI2S,
  quantizeI2S,
  unpackI2S,
} from "./i2s";
export { dequantizeQ4_0, Q4_0_BLOCK, Q4_0_BYTES, quantizeQ4_0 } from "./q4_0";
export { dequantizeQ6_K, dotQ6_KQ8_K, Q6_K_BLOCK, Q6_K_BYTES, quantizeQ6_K } from "./q6_k";
export { dequantizeQ8_0, Q8_0_BLOCK, Q8_0_BYTES, quantizeQ8_0 } from "./q8_0";
export {
  dequantizeQ8_K,
  encodeQ8_K,
  Q8_K_BLOCK,
  Q8_K_BYTES,
  type Q8KBlocks,
  quantizeQ8_K,
} from "./q8_k";
export {
  absmeanTernary,
  type Int8Activations,
  quantizeActivationsI8,
  type TernaryWeights,
} from "./ternary";
export {
  dequantizeTQ1_0,
  packTQ1_0,
  quantizeTQ1_0,
  TQ1_0_BLOCK,
  TQ1_0_BYTES,
  unpackTQ1_0,
} from "./tq1_0";
export {
  dequantizeTQ2_0,
  packTQ2_0,
  packTQ2Codes,
  quantizeTQ2_0,
  TQ2_0_BLOCK,
  TQ2_0_BYTES,
  unpackTQ2_0,
} from "./tq2_0";
export { QUANT_TRAITS, type QuantTraits, type QuantType, quantByteSize } from "./traits";
