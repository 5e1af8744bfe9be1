/**
 * Golden greedy tokens pinned on the tiny fixtures (fixtures/golden-greedy.json), and the
 * fixtures' peakedness measured with this engine (the foundation issue's promise).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, fixture } from "../test/models";
import { loadModel } from "./load";

afterAll(cleanup);

const golden = JSON.parse(
  fs.readFileSync(
    path.resolve(import.meta.dirname, "../../../fixtures/golden-greedy.json"),
    "utf8",
  ),
) as { models: Record<string, Record<string, number[]>> };

describe("golden greedy tokens", () => {
  for (const [name, prompts] of Object.entries(golden.models)) {
    it(`${name} reproduces its pinned continuations (regenerate only on intended numeric changes: scripts/update-golden.mjs)`, {
      timeout: 120_000,
    }, async () => {
      const model = await loadModel(await fixture(name), {
        backend: "reference",
        contextLength: 64,
      });
      const tokenizer = Tokenizer.fromGguf(model.description.file.metadata);
      const vocab = model.description.hparams.vocabSize;
      for (const [prompt, expected] of Object.entries(prompts)) {
        const seq = model.createSequence();
        let { runs } = await model.step([{ sequence: seq, tokens: tokenizer.encode(prompt) }]);
        const tokens: number[] = [];
        const margins: number[] = [];
        for (let i = 0; i < expected.length; i++) {
          const l = runs[0]!.logits;
          let best = 0;
          let second = -1;
          for (let t = 1; t < vocab; t++) {
            if (l[t]! > l[best]!) {
              second = best;
              best = t;
            } else if (second < 0 || l[t]! > l[second]!) {
              second = t;
            }
          }
          tokens.push(best);
          margins.push(l[best]! - l[second]!);
          ({ runs } = await model.step([{ sequence: seq, tokens: [best] }]));
        }
        expect(tokens, `${name}: ${prompt}`).toEqual(expected);
        // Peakedness with this engine: most positions lead by ≥ 0.5, continuations vary.
        expect(margins.filter((m) => m >= 0.5).length / margins.length).toBeGreaterThanOrEqual(
          0.75,
        );
        expect(new Set(tokens).size).toBeGreaterThanOrEqual(8);
        model.freeSequence(seq);
      }
      await model.dispose();
    });
  }
});
