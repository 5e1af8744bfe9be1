/**
 * Speculative decoding: single-stream greedy decode speed with and without a drafter on
 * grounded prompts (the reply should copy or edit a given text), on the CPU backend. Every
 * drafted run must give the plain run's tokens (the script fails otherwise).
 *
 *   pnpm bench:speculative model.gguf [--draft lookup|oracle|wrong|draft.gguf] [--draft-max 8]
 *                                     [--tokens 64] [--threads 2]
 *
 * "oracle" proposes the plain run's own next tokens, for free: every draft is accepted, so it
 * measures what verifying k drafted tokens in one step costs against k single steps, the best
 * any drafter could reach with that draft length. "wrong" proposes tokens that are never right:
 * the worst case, what rejected drafts cost. Both are yardsticks, not drafters.
 */
import { parseArgs } from "node:util";
import { registerBackend } from "@bitnet-ts/engine-core";
import {
  type Drafter,
  loadDrafter,
  PromptLookupDrafter,
  TextGenerator,
} from "@bitnet-ts/generation";

registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    draft: { type: "string", default: "lookup" },
    "draft-max": { type: "string" },
    tokens: { type: "string", default: "64" },
    threads: { type: "string" },
  },
});
const model = positionals[0];
if (model === undefined) {
  console.error(
    "usage: pnpm bench:speculative model.gguf [--draft lookup|oracle|wrong|draft.gguf] [--draft-max N] [--tokens 64] [--threads N]",
  );
  process.exit(1);
}
const maxTokens = Number(values.tokens);
const maxDraft = values["draft-max"] === undefined ? undefined : Number(values["draft-max"]);
const target = await TextGenerator.load(model, {
  backend: "cpu",
  contextLength: 1024,
  ...(values.threads === undefined
    ? {}
    : { backendOptions: { cpu: { threads: Number(values.threads) } } }),
});
/** The yardstick drafter: the continuation the plain run produced (set before each prompt). */
let oracle: readonly number[] = [];
let oraclePrompt = 0;
let drafter: Drafter;
let dispose = async (): Promise<void> => {};
if (values.draft === "oracle" || values.draft === "wrong") {
  const shift = values.draft === "wrong" ? 1 : 0;
  drafter = {
    name: values.draft,
    maxDraft: maxDraft ?? 8,
    begin: () => ({
      propose: (context, max) => {
        const at = context.length - oraclePrompt;
        return oracle.slice(at, at + Math.min(max, maxDraft ?? 8)).map((t) => t + shift);
      },
      end: () => {},
    }),
  };
} else if (values.draft === "lookup") {
  drafter = new PromptLookupDrafter(maxDraft === undefined ? {} : { maxDraft });
} else {
  const loaded = await loadDrafter(values.draft!, target, {
    ...(maxDraft === undefined ? {} : { maxDraft }),
  });
  drafter = loaded.drafter;
  dispose = () => loaded.dispose();
}

const PASSAGE =
  "The committee met on Tuesday to review the budget for the new library. After a long discussion, the members agreed to raise the funds for the reading room by ten percent, to delay the renovation of the east wing until spring, and to ask the city for a grant to cover the cost of the new computers.";
const PROMPTS: [string, string][] = [
  ["repeat", `Text: ${PASSAGE}\nCopy the text above exactly.\nCopy: `],
  [
    "summarize",
    `Text: ${PASSAGE}\nSummarize the text in one sentence, quoting it.\nSummary: The committee`,
  ],
  [
    "edit",
    `Text: ${PASSAGE}\nRewrite the text, replacing "Tuesday" with "Friday".\nRewritten: The committee met on Friday`,
  ],
];

// Warm-up: first-step costs and page faults of the weights.
await target.generate("Hello", { maxTokens: 4, temperature: 0 }).result;

console.error(`drafter ${drafter.name}, up to ${drafter.maxDraft} tokens per step`);
const rows: string[] = [];
let identical = true;
const ratios: number[] = [];
for (const [name, prompt] of PROMPTS) {
  const options = { maxTokens, temperature: 0, ignoreEos: true } as const;
  const plain = await target.generate(prompt, options).result;
  oracle = plain.tokens;
  oraclePrompt = plain.promptTokens.length;
  const fast = await target.generate(prompt, { ...options, draft: drafter }).result;
  const same = plain.tokens.join() === fast.tokens.join();
  identical &&= same;
  const s = fast.speculative!;
  const a = plain.timings.generatedTokensPerSecond;
  const b = fast.timings.generatedTokensPerSecond;
  ratios.push(b / a);
  rows.push(
    `| ${name} | ${plain.tokens.length} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${(b / a).toFixed(2)}× | ${s.accepted}/${s.drafted} (${s.drafted > 0 ? ((100 * s.accepted) / s.drafted).toFixed(0) : 0}%) | ${s.steps} | ${same ? "yes" : "NO"} |`,
  );
  console.error(
    `${name}: plain ${a.toFixed(2)} t/s, drafted ${b.toFixed(2)} t/s, accepted ${s.accepted}/${s.drafted}`,
  );
}
console.log(
  "| prompt | tokens | plain decode t/s | with drafts t/s | speed-up | drafts accepted | steps with a draft | same tokens |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |");
for (const row of rows) {
  console.log(row);
}
const mean = ratios.reduce((x, y) => x + y, 0) / ratios.length;
console.log(`\nmean speed-up ${mean.toFixed(2)}× (${drafter.name})`);
await dispose();
await target.dispose();
process.exitCode = identical ? 0 : 1;
