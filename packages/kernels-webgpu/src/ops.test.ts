/**
 * Op by op against the reference backend (the oracle): every op of the graph runs on the GPU on
 * exactly the inputs the reference computed (WebGpuModel.stepWithInputs), and its output is
 * compared with the reference's within WEBGPU_OP_TOLERANCES.
 */
import { loadModel } from "@bitnet-ts/engine-core";
import { describeOpByOp, type OpTolerances } from "@bitnet-ts/engine-core/testing";
import { afterAll } from "vitest";
import { cleanup, fixture, gpuModel, LONG_PROMPT } from "../test/models";

afterAll(cleanup);

/**
 * Bounds relative to each buffer's scale, set from what lavapipe measured (comments). Ternary
 * linears are exact integer dot products with the scales applied in the reference's order, and
 * so are the embedding, the adds and the squared-ReLU gate: bit for bit. Attention differs where
 * a probability lands on the other side of an f16 rounding (the GPU sums scores in another order).
 */
export const WEBGPU_OP_TOLERANCES: OpTolerances = {
  embed: 0,
  linear_ternary: 0, // measured 0
  linear_float: 1e-5, // f32 sums in 16 lanes (no float projection in the fixtures)
  rms_norm: 1e-6, // Σx² in f32 lanes instead of double in order (measured 1.7e-7)
  rope: 1e-6, // the reference's own cos/sin table (measured 0)
  attention: 5e-4, // measured 1.5e-4 (tiny-i2s), 0 (tiny-tq2, tiny-tq1)
  add: 0,
  glu_relu2: 0,
  glu_silu: 1e-6, // exp (measured 1.2e-7)
  output: 2e-6, // f16 head, f32 sums in 16 lanes (measured 5.3e-7)
};

const STEPS: readonly (readonly number[])[] = [LONG_PROMPT, [1234], [578, 4062, 14198]];

for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
  describeOpByOp(`${name}, WebGPU ops`, {
    reference: async () =>
      loadModel(await fixture(name), { backend: "reference", contextLength: 64 }),
    candidates: [
      {
        name: "WebGPU (subgroup reductions where the adapter has them)",
        load: () => gpuModel(name),
      },
      {
        name: "WebGPU (workgroup-memory reductions only)",
        load: () => gpuModel(name, 64, { subgroups: false }),
      },
    ],
    steps: STEPS,
    tolerances: WEBGPU_OP_TOLERANCES,
    expectKinds: ["add", "attention", "embed", "linear_ternary", "output", "rms_norm", "rope"],
    onMeasured: (candidate, worst) => {
      console.log(
        `${name} ${candidate}: ${[...worst].map(([k, e]) => `${k} ${e.error.toExponential(2)} (${e.buffer})`).join(", ")}`,
      );
    },
    timeout: 300_000,
  });
}
