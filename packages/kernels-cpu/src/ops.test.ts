/**
 * Op by op against the reference backend (the oracle): every op of the graph runs natively on
 * exactly the inputs the reference computed (CpuModel.stepWithInputs), on every kernel path the
 * addon can name (those this CPU cannot run are registered as skipped, with the reason), and its
 * output is compared with the reference's within CPU_OP_TOLERANCES (test/ops.ts). The comparison
 * itself is engine-core's reusable describeOpByOp.
 */
import { loadModel } from "@bitnet-ts/engine-core";
import { describeOpByOp } from "@bitnet-ts/engine-core/testing";
import { afterAll } from "vitest";
import {
  captureStore,
  cleanup,
  cpuModel,
  fixture,
  LONG_PROMPT,
  SLOW_TEST_MS,
} from "../test/models";
import { BITNET_OP_KINDS, CPU_OP_TOLERANCES, kernelPathCandidates } from "../test/ops";

afterAll(cleanup);

// A prompt, a decode step, then steps of 3, 5 and 8 tokens: every token-count variant of the
// multi-token kernels (VNNI below the AMX threshold, AMX from it) meets the reference.
const STEPS: readonly (readonly number[])[] = [
  LONG_PROMPT,
  [1234],
  [578, 4062, 14198],
  [311, 1057, 9906, 264, 1296],
  [791, 3363, 315, 9822, 374, 12366, 13, 578],
];

for (const name of ["tiny-i2s", "tiny-tq2", "tiny-tq1"]) {
  describeOpByOp(`${name}, native ops`, {
    reference: async () =>
      loadModel(await fixture(name), { backend: "reference", contextLength: 64 }),
    captureStore: captureStore(name, STEPS),
    candidates: kernelPathCandidates((kernelPath) => cpuModel(name, { kernelPath, threads: 2 })),
    steps: STEPS,
    tolerances: CPU_OP_TOLERANCES,
    expectKinds: BITNET_OP_KINDS,
    timeout: SLOW_TEST_MS,
  });
}

// TQ1_0 read in place: the one-token steps unpack base-3 blocks in the kernels, the longer ones
// convert row tiles per step; neither shares the load-time repack's result.
describeOpByOp("tiny-tq1 read in place (tq1: direct), native ops", {
  reference: async () =>
    loadModel(await fixture("tiny-tq1"), { backend: "reference", contextLength: 64 }),
  captureStore: captureStore("tiny-tq1", STEPS),
  candidates: kernelPathCandidates((kernelPath) =>
    cpuModel("tiny-tq1", { kernelPath, threads: 2, tq1: "direct" }),
  ),
  steps: STEPS,
  tolerances: CPU_OP_TOLERANCES,
  expectKinds: BITNET_OP_KINDS,
  timeout: SLOW_TEST_MS,
});
