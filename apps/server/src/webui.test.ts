/**
 * The chat page at /: the built apps/web folder, public (the page must load so a person can type
 * an API key), while the API behind it still needs the key; off with `webUi: false`.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BitnetServer, startServer } from "./server";
import { isWebUiRequest, webUiRoot } from "./webui";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-webui-"));
const model = path.join(tmp, "tiny-i2s.gguf");
const KEY = "sk-page-key";

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, model);
}, 120_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("which requests are the page's", () => {
  it("the page and its assets, read-only", () => {
    expect(isWebUiRequest("GET", "/")).toBe(true);
    expect(isWebUiRequest("GET", "/index.html?model=x")).toBe(true);
    expect(isWebUiRequest("HEAD", "/assets/index-abc.js")).toBe(true);
    expect(isWebUiRequest("POST", "/")).toBe(false);
    expect(isWebUiRequest("GET", "/v1/models")).toBe(false);
    expect(isWebUiRequest("GET", "/metrics")).toBe(false);
    expect(isWebUiRequest("GET", "/models/default.gguf")).toBe(false);
  });
});

describe("bitnet serve's chat page", () => {
  let server: BitnetServer;
  beforeAll(async () => {
    server = await startServer({ model, port: 0, apiKeys: [KEY], contextLength: 128, threads: 1 });
    await server.ready;
  }, 120_000);
  afterAll(async () => {
    await server?.close({ graceMs: 500 });
  });

  it("is built (the server depends on @bitnet-ts/web)", () => {
    expect(webUiRoot()).toHaveProperty("root");
  });

  it("serves the page and its assets without a key; the API still asks for one", async () => {
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    const html = await page.text();
    expect(html).toContain("bitnet-ts");
    const asset = /src="\.\/(assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    expect((await fetch(`${server.url}/${asset}`)).status).toBe(200);
    expect((await fetch(`${server.url}/v1/models`)).status).toBe(401);
    expect(
      (await fetch(`${server.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } }))
        .status,
    ).toBe(200);
    // The static site's demo model is not served by the server.
    expect((await fetch(`${server.url}/models/default.gguf`)).status).toBe(401);
  });
});

describe("webUi: false", () => {
  it("serves no page", async () => {
    const server = await startServer({
      model,
      port: 0,
      webUi: false,
      contextLength: 128,
      threads: 1,
    });
    try {
      await server.ready;
      expect((await fetch(`${server.url}/`)).status).toBe(404);
    } finally {
      await server.close({ graceMs: 500 });
    }
  });
});
