/**
 * Op by op against the reference backend (the oracle): every op of the graph runs on exactly the
 * inputs the reference computed (CudaModel.stepWithInputs), and its output is compared with the
 * reference's within CUDA_OP_TOLERANCES. Two candidates: the GPU (skipped, with the reason, where
 * there is none) and the same model code on the CPU through the kernels' host twins.
 */
import { loadModel } from "@bitnet-ts/engine-core";
import { describeOpByOp, type OpTolerances } from "@bitnet-ts/engine-core/testing";
import { afterAll } from "vitest";
import { cleanup, cudaModel, fixture, LONG_PROMPT, NO_ADDON, NO_GPU } from "../test/models";

afterAll(cleanup);

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

const STEPS: readonly (readonly number[])[] = [LONG_PROMPT, [1234], [578, 4062, 14198]];

for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
  describeOpByOp(`${name}, CUDA ops`, {
    reference: async () =>
      loadModel(await fixture(name), { backend: "reference", contextLength: 64 }),
    candidates: [
      {
        name: "the GPU",
        load: () => cudaModel(name, "device"),
        skip: NO_GPU === false ? undefined : NO_GPU,
      },
      {
        name: "the host twins",
        load: () => cudaModel(name, "host"),
        skip: NO_ADDON === false ? undefined : NO_ADDON,
      },
    ],
    steps: STEPS,
    tolerances: CUDA_OP_TOLERANCES,
    expectKinds: ["add", "attention", "embed", "linear_ternary", "output", "rms_norm", "rope"],
    onMeasured: (candidate, worst) => {
      console.log(
        `${name} ${candidate}: ${[...worst].map(([k, e]) => `${k} ${e.error.toExponential(2)} (${e.buffer})`).join(", ")}`,
      );
    },
    timeout: 300_000,
  });
}
