import type { OpTolerances } from "@bitnet-ts/engine-core/testing";

/**
 * Bounds relative to each buffer's scale. Ternary linears are exact integer dot products with
 * the scales applied in the reference's order, and so are the embedding, the adds, the
 * squared-ReLU gate and the attention's f16 dot products: bit for bit where the order is the
 * reference's. Sums split across a warp's 32 lanes (RMSNorm's Σx² in double, the f16 head, the
 * softmax's denominator) differ in the last bits.
 */
export const CUDA_OP_TOLERANCES: OpTolerances = {
  embed: 0,
  linear_ternary: 0,
  linear_float: 1e-5, // f32 sums in 32 lanes
  rms_norm: 1e-6, // Σx² in double lanes instead of in order
  rope: 1e-6, // cos/sin of the same f32 angles from libm / CUDA's double functions
  attention: 5e-4, // the softmax sum in lanes; a probability may round to the other f16
  add: 0,
  glu_relu2: 0,
  glu_silu: 1e-6, // exp
  output: 2e-6, // f16 head, f32 sums in 32 lanes
};
