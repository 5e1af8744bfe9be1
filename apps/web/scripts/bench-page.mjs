#!/usr/bin/env node
// The page's speed in headless Chromium, per backend, on tiny-i2s: time from opening the page to
// the first generated token (page load + model load + prompt), and decode tokens/s. A benchmark
// command, not a test: `pnpm --filter @bitnet-ts/web bench [-n tokens] [-r repetitions]`.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { browserSkipReason, launchChromium, staticServer } from "../test/harness.mjs";

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const nTokens = flag("-n", 32);
const reps = flag("-r", 3);
const skip = browserSkipReason();
if (skip !== undefined) {
  console.error(`bench-page: cannot run: ${skip}`);
  process.exit(1);
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "web-bench-"));
const model = path.join(tmp, "tiny-i2s.gguf");
await writeFixture(PRESETS["tiny-i2s"], model);
const site = await staticServer({ "/models/tiny-i2s.gguf": model });
const browser = await launchChromium();
const version = await browser.version();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
try {
  for (const backend of ["webgpu", "reference"]) {
    const firstToken = [];
    const decode = [];
    const load = [];
    for (let r = 0; r < reps; r++) {
      const page = await browser.newPage();
      const opened = performance.now();
      await page.goto(
        `${site.url}/index.html?mode=local&model=models/tiny-i2s.gguf&backend=${backend}`,
      );
      await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), {
        timeout: 300_000,
      });
      if ((await page.evaluate(() => document.body.dataset.state)) === "error") {
        throw new Error(await page.$eval("#error", (e) => e.textContent));
      }
      load.push(Number(await page.evaluate(() => document.body.dataset.loadMs)));
      await page.select("#mode", "complete");
      await page.$eval("#max-tokens", (e, v) => (e.value = v), String(nTokens));
      await page.$eval("#temperature", (e) => (e.value = "0"));
      await page.type("#prompt", "The capital of France is");
      await page.click("#send");
      await page.waitForFunction(
        () => (document.querySelector(".message.assistant .text")?.textContent ?? "") !== "",
        {
          timeout: 300_000,
          polling: 5,
        },
      );
      firstToken.push(performance.now() - opened);
      await page.waitForFunction(
        () => document.querySelector(".message.assistant")?.dataset.state === "done",
        {
          timeout: 300_000,
        },
      );
      decode.push(Number(await page.$eval(".message.assistant", (e) => e.dataset.tokensPerSecond)));
      await page.close();
      process.stderr.write(`bench-page: ${backend} repetition ${r + 1}/${reps} done\n`);
    }
    rows.push([
      backend,
      median(load).toFixed(0),
      median(firstToken).toFixed(0),
      median(decode).toFixed(2),
    ]);
  }
} finally {
  await browser.close();
  await site.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(`tiny-i2s in headless ${version}, ${nTokens} tokens, median of ${reps}`);
console.log("| backend | model load (ms) | page open → first token (ms) | decode t/s |");
console.log("| --- | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(`| ${r.join(" | ")} |`);
}
