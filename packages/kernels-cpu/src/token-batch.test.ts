/**
 * A step of several tokens gives each token the logits it gets in a step of its own, bit for bit,
 * on every kernel path: speculative decoding verifies a draft in one step and must reproduce
 * plain decoding, and a sequence's logits must not depend on who shares its step. Steps of 2-9
 * tokens cover each multi-token kernel variant (pairs of tokens in the F16 head, four- and
 * eight-token ternary passes, AMX from its thresholds, the leftovers after them).
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, LONG_PROMPT, SLOW_TEST_MS } from "../test/models";
import { ALL_KERNEL_PATHS, pathSkipReason, pathTitle } from "../test/paths";

afterAll(cleanup);

const DRAFT = [578, 4062, 14198, 311, 1057, 9906, 264, 1296, 791] as const;

describe("a step of several tokens reproduces single steps", () => {
  for (const kernelPath of ALL_KERNEL_PATHS) {
    const skip = pathSkipReason(kernelPath);
    for (const name of ["tiny-i2s", "tiny-tq2"]) {
      it.skipIf(skip !== undefined)(
        `${name} on ${pathTitle(kernelPath)}: steps of 2-9 tokens, every row's logits`,
        { timeout: SLOW_TEST_MS },
        async () => {
          const model = await cpuModel(name, { kernelPath, threads: 2 });
          const single: Float32Array[] = [];
          const seq = model.createSequence();
          await model.step([{ sequence: seq, tokens: LONG_PROMPT }]);
          for (const token of DRAFT) {
            const { runs } = await model.step([{ sequence: seq, tokens: [token] }]);
            single.push(runs[0]!.logits.slice());
          }
          model.freeSequence(seq);
          for (const n of [2, 3, 4, 5, 8, 9]) {
            const batched = model.createSequence();
            await model.step([{ sequence: batched, tokens: LONG_PROMPT }]);
            const { runs } = await model.step([
              { sequence: batched, tokens: DRAFT.slice(0, n), logits: "all" },
            ]);
            const vocab = single[0]!.length;
            for (let i = 0; i < n; i++) {
              const row = runs[0]!.logits.subarray(i * vocab, (i + 1) * vocab);
              const want = single[i]!;
              let differ = 0;
              for (let v = 0; v < vocab; v++) {
                if (!Object.is(row[v], want[v])) {
                  differ++;
                }
              }
              expect(differ, `${n}-token step, token ${i}: logits that differ`).toBe(0);
            }
            model.freeSequence(batched);
          }
          await model.dispose();
        },
      );
    }
  }
});
