/**
 * The page in a real browser (Debian's Chromium, headless, driven by puppeteer-core): it loads a
 * fixture over HTTP range requests, generates greedily, and its tokens equal `bitnet run --temp
 * 0` on the same file, on the reference backend and on WebGPU (SwiftShader); it chats with a real
 * `bitnet serve`, with and without an API key; bad input shows a readable error; a screenshot of
 * each page is written under test-output/ and checked to show something.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { GgufWriter, gguf, parseGguf } from "@bitnet-ts/gguf";
import type { Browser, Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bitnetRun,
  bitnetServe,
  browserSkipReason,
  launchChromium,
  screenshotStats,
  staticServer,
} from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(here, "../test-output");
const skip = browserSkipReason();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "web-"));
const PROMPT = "The capital of France is";
const N = 8;

let browser: Browser;
let site: Awaited<ReturnType<typeof staticServer>>;
let model: string;

async function screenshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(OUT, { recursive: true });
  const png = await page.screenshot({ fullPage: true });
  fs.writeFileSync(path.join(OUT, `${name}.png`), png);
  const stats = screenshotStats(png);
  expect(stats.colours, `${name}.png looks blank`).toBeGreaterThan(8);
  expect(stats.inkFraction, `${name}.png looks blank`).toBeGreaterThan(0.01);
}

async function open(url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  return { page, errors };
}

/** Waits until the page is in `state` (or in "error", which fails with the page's message). */
async function waitFor(page: Page, state: string, timeout = 240_000): Promise<void> {
  await page.waitForFunction(
    (s) => document.body.dataset["state"] === s || document.body.dataset["state"] === "error",
    { timeout },
    state,
  );
  const now = await page.evaluate(() => document.body.dataset["state"]);
  if (now !== state) {
    const error = await page.$eval("#error", (e) => e.textContent);
    throw new Error(`the page went to "${now}": ${error}`);
  }
}

/** Sends a prompt as the person would and returns the finished reply. */
async function send(
  page: Page,
  prompt: string,
  options: { mode: "complete" | "chat"; maxTokens: number; temperature?: number },
): Promise<{ text: string; tokens: number[] | undefined; state: string }> {
  await page.select("#mode", options.mode);
  await page.$eval(
    "#max-tokens",
    (e, v) => ((e as HTMLInputElement).value = v),
    String(options.maxTokens),
  );
  await page.$eval(
    "#temperature",
    (e, v) => ((e as HTMLInputElement).value = v),
    String(options.temperature ?? 0),
  );
  await page.type("#prompt", prompt);
  const before = await page.$$eval(".message.assistant", (m) => m.length);
  await page.click("#send");
  await page.waitForFunction(
    (n) => {
      const replies = document.querySelectorAll<HTMLElement>(".message.assistant");
      const last = replies[replies.length - 1];
      return replies.length > n && last !== undefined && last.dataset["state"] !== "generating";
    },
    { timeout: 240_000 },
    before,
  );
  return page.$$eval(".message.assistant", (m) => {
    const last = m[m.length - 1] as HTMLElement;
    return {
      text: last.querySelector(".text")?.textContent ?? "",
      tokens: last.dataset["tokens"]?.split(",").map(Number),
      state: last.dataset["state"] ?? "",
    };
  });
}

describe.skipIf(skip !== undefined)(
  `the chat page in Chromium${skip === undefined ? "" : ` (skipped: ${skip})`}`,
  () => {
    beforeAll(async () => {
      model = path.join(tmp, "tiny-i2s.gguf");
      await writeFixture(PRESETS["tiny-i2s"]!, model);
      const notGguf = path.join(tmp, "not-a-model.gguf");
      fs.writeFileSync(notGguf, "this is a text file, not a GGUF model\n".repeat(100));
      const truncated = path.join(tmp, "truncated.gguf");
      fs.writeFileSync(truncated, fs.readFileSync(model).subarray(0, 4_000_000));
      // A valid GGUF of an architecture this engine does not run.
      const unsupported = path.join(tmp, "unsupported.gguf");
      const source = parseGguf(new Uint8Array(fs.readFileSync(model)));
      const writer = new GgufWriter({ alignment: source.alignment }).setAll(source.metadata);
      writer.set("general.architecture", gguf.string("llama"));
      for (const t of source.tensors) {
        writer.addTensor(t.name, t.type, t.shape, source.tensorData(t));
      }
      await writer.writeFile(unsupported);
      site = await staticServer({
        "/models/tiny-i2s.gguf": model,
        "/models/not-a-model.gguf": notGguf,
        "/models/truncated.gguf": truncated,
        "/models/unsupported.gguf": unsupported,
      });
      browser = await launchChromium();
    });

    afterAll(async () => {
      await browser?.close();
      await site?.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    for (const backend of ["reference", "webgpu"] as const) {
      it(`${backend}: greedy tokens equal bitnet run --temp 0 on the same file`, async () => {
        const expected = bitnetRun(model, PROMPT, N);
        const { page, errors } = await open(
          `${site.url}/index.html?mode=local&model=models/tiny-i2s.gguf&backend=${backend}`,
        );
        await waitFor(page, "ready");
        expect(await page.evaluate(() => document.body.dataset["backend"])).toBe(backend);
        const reply = await send(page, PROMPT, { mode: "complete", maxTokens: N });
        expect(reply.state).toBe("done");
        expect(reply.tokens).toEqual(expected.tokens);
        expect(reply.text).toBe(expected.text);
        if (backend === "reference") {
          // The person is told the fallback is slow.
          expect(await page.$eval("#note", (e) => (e as HTMLElement).hidden)).toBe(false);
        }
        await screenshot(page, `local-${backend}`);
        expect(errors).toEqual([]);
        await page.close();
      });
    }

    it("stops a generation when asked", async () => {
      const { page } = await open(
        `${site.url}/index.html?mode=local&model=models/tiny-i2s.gguf&backend=webgpu`,
      );
      await waitFor(page, "ready");
      await page.select("#mode", "complete");
      await page.$eval("#max-tokens", (e) => ((e as HTMLInputElement).value = "4000"));
      await page.type("#prompt", PROMPT);
      await page.click("#send");
      await page.waitForFunction(
        () => (document.querySelector(".message.assistant .text")?.textContent ?? "").length > 10,
        {
          timeout: 120_000,
        },
      );
      await page.click("#stop");
      await waitFor(page, "ready", 60_000);
      const stats = await page.$eval(".message.assistant .stats", (e) => e.textContent);
      expect(stats).toMatch(/\(abort\)/);
      await page.close();
    });

    it.each([
      ["not-a-model.gguf", /GGUF|magic/i],
      ["truncated.gguf", /truncat|short|end of|beyond|bytes/i],
      ["missing.gguf", /404|not found/i],
      ["unsupported.gguf", /architecture|llama/i],
    ])("bad input (%s) shows a readable error and the page stays usable", async (file, message) => {
      const { page, errors } = await open(
        `${site.url}/index.html?mode=local&model=models/${file}&backend=reference`,
      );
      await page.waitForFunction(() => document.body.dataset["state"] === "error", {
        timeout: 120_000,
      });
      const text = await page.$eval("#error", (e) => e.textContent ?? "");
      expect(text).toMatch(message);
      // Not frozen: the controls answer, and a good model loads after the bad one.
      await page.$eval("#model-url", (e) => ((e as HTMLInputElement).value = ""));
      await page.type("#model-url", "models/tiny-i2s.gguf");
      await page.click("#load-url");
      await waitFor(page, "ready");
      expect(errors).toEqual([]);
      await page.close();
    });

    for (const key of [undefined, "page-secret"] as const) {
      it(`bitnet serve's page streams a chat reply ${key === undefined ? "without" : "with"} an API key`, async () => {
        const server = await bitnetServe(model, key === undefined ? [] : ["--api-key", key]);
        try {
          const { page, errors } = await open(`${server.url}/`);
          await page.waitForFunction(() => document.body.dataset["mode"] === "server", {
            timeout: 30_000,
          });
          if (key !== undefined) {
            // Without the key the page asks for it; the API refuses it.
            await page.waitForFunction(
              () => /API key/.test(document.querySelector("#error")?.textContent ?? ""),
              {
                timeout: 30_000,
              },
            );
            expect((await fetch(`${server.url}/v1/models`)).status).toBe(401);
            await page.type("#api-key", key);
            await page.$eval("#api-key", (e) => e.dispatchEvent(new Event("change")));
          }
          await waitFor(page, "ready", 30_000);
          expect(await page.$eval("#backend", (e) => e.textContent)).toMatch(/cpu/);
          const reply = await send(page, "Hello!", { mode: "chat", maxTokens: 12 });
          expect(reply.state).toBe("done");
          expect(reply.text.length).toBeGreaterThan(0);
          await screenshot(page, `server-${key === undefined ? "open" : "api-key"}`);
          expect(errors).toEqual([]);
          await page.close();
        } finally {
          await server.stop();
        }
      });
    }

    it("bitnet serve --no-webui serves no page", async () => {
      const server = await bitnetServe(model, ["--no-webui"]);
      try {
        expect((await fetch(`${server.url}/`)).status).toBe(404);
      } finally {
        await server.stop();
      }
    });
  },
);
