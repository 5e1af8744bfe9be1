/**
 * Op by op at the real width: one layer of the microsoft/bitnet-b1.58-2B-4T shape (hidden 2560,
 * head_dim 128, 20 query / 5 KV heads, FFN 6912, I2_S, relu², vocabulary 128256), generated at
 * test time, through a prompt step of 8 tokens and a decode step, on every kernel path the addon
 * can name (skipped with the reason where this CPU cannot run it), within the same tolerances as
 * the tiny models (ops.test.ts). Widths the tiny fixtures never reach (several 256-blocks per
 * row, 6912 = 27 × 256, a 128256-row head split across threads, 128-wide heads) meet the oracle.
 *
 * BITNET_OPS_REPORT=1 prints the worst error per op kind and path.
 */
import { loadModel, readModelDescription } from "@bitnet-ts/engine-core";
import { describeOpByOp } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, fixture } from "../test/models";
import { BITNET_OP_KINDS, CPU_OP_TOLERANCES, kernelPathCandidates } from "../test/ops";

afterAll(cleanup);

const NAME = "layer-2b4t-i2s";
const PROMPT = [128000, 791, 6864, 315, 9822, 374, 12366, 13];

describe("the 2B-4T layer fixture", () => {
  it("has the released model's shape", { timeout: 120_000 }, async () => {
    const { hparams } = await readModelDescription(await fixture(NAME), { tensorData: false });
    expect(hparams).toMatchObject({
      nEmbd: 2560,
      nLayer: 1,
      nFf: 6912,
      nHead: 20,
      nHeadKv: 5,
      headDim: 128,
      vocabSize: 128256,
      ffnActivation: "relu2",
    });
  });
});

describeOpByOp(`one layer of the 2B-4T shape (${NAME}), native ops`, {
  reference: async () =>
    loadModel(await fixture(NAME), { backend: "reference", contextLength: 64 }),
  candidates: kernelPathCandidates((kernelPath) => cpuModel(NAME, { kernelPath, threads: 2 })),
  steps: [{ tokens: PROMPT, logits: "all" }, { tokens: [1234] }],
  tolerances: CPU_OP_TOLERANCES,
  expectKinds: [...BITNET_OP_KINDS, "glu_relu2"],
  onMeasured: (candidate, worst) => {
    if (process.env["BITNET_OPS_REPORT"]) {
      const errors = [...worst.values()].map((e) => `${e.kind} ${e.error.toExponential(2)}`);
      console.log(`${NAME} on ${candidate}: ${errors.join(", ")}`);
    }
  },
});
