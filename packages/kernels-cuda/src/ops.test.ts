/**
 * Op by op against the reference backend (the oracle): every op of the graph runs on exactly the
 * inputs the reference computed (CudaModel.stepWithInputs), and its output is compared with the
 * reference's within CUDA_OP_TOLERANCES. Two candidates: the GPU (skipped, with the reason, where
 * there is none) and the same model code on the CPU through the kernels' host twins.
 */
import { loadModel } from "@bitnet-ts/engine-core";
import { describeOpByOp } from "@bitnet-ts/engine-core/testing";
import { afterAll } from "vitest";
import { cleanup, cudaModel, fixture, LONG_PROMPT, NO_ADDON, NO_GPU } from "../test/models";
import { CUDA_OP_TOLERANCES } from "../test/tolerances";

afterAll(cleanup);

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
