/**
 * The pinned greedy tokens (fixtures/golden-greedy.json) on every kernel path the addon can name,
 * those this CPU cannot run registered as skipped with the reason.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import { argmax, cleanup, cpuModel, SLOW_TEST_MS } from "../test/models";
import { ALL_KERNEL_PATHS, pathSkipReason, pathTitle } from "../test/paths";

afterAll(cleanup);

const golden = JSON.parse(
  fs.readFileSync(
    path.resolve(import.meta.dirname, "../../../fixtures/golden-greedy.json"),
    "utf8",
  ),
) as {
  models: Record<string, Record<string, number[]>>;
};

describe("golden greedy tokens on every kernel path", () => {
  for (const [name, prompts] of Object.entries(golden.models)) {
    for (const kernelPath of ALL_KERNEL_PATHS) {
      it.skipIf(pathSkipReason(kernelPath) !== undefined)(
        `${name} on ${pathTitle(kernelPath)}`,
        { timeout: SLOW_TEST_MS },
        async () => {
          const model = await cpuModel(name, { kernelPath, threads: 2 });
          const tokenizer = Tokenizer.fromGguf(model.description.file.metadata);
          for (const [prompt, expected] of Object.entries(prompts)) {
            const seq = model.createSequence();
            let { runs } = await model.step([{ sequence: seq, tokens: tokenizer.encode(prompt) }]);
            const tokens: number[] = [];
            while (tokens.length < expected.length) {
              tokens.push(argmax(runs[0]!.logits));
              ({ runs } = await model.step([{ sequence: seq, tokens: [tokens.at(-1)!] }]));
            }
            expect(tokens, `${name} ${kernelPath}: ${prompt}`).toEqual(expected);
            model.freeSequence(seq);
          }
          await model.dispose();
        },
      );
    }
  }
});
