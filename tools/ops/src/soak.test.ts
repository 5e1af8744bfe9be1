import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatSoak, runSoak } from "./soak";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-soak-"));
const model = path.join(tmp, "tiny-i2s.gguf");

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, model);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("soak (the CI's short version; `pnpm soak` runs 10,000 requests over 10 minutes)", () => {
  it("1,000 mixed requests: no crash, no 5xx but 503, streams whole, idle RSS not growing", {
    timeout: 600_000,
  }, async () => {
    const report = await runSoak({ model, requests: 1000, warmup: 300 });
    console.log(formatSoak(report));
    expect(report.crashed).toBe(false);
    expect(report.failures).toEqual([]);
    expect(report.requests).toBe(1000);
    // Every kind was exercised.
    for (const kind of report.kinds) {
      expect(kind.count, kind.kind).toBeGreaterThan(20);
    }
    // No growth beyond 10% in this short run (a fall is the machine reclaiming cold pages, see
    // soak.ts). The full soak holds 5%; after a 300-request warm-up the heap is still settling and
    // CI runs this beside other work: measured here −7.5% to +4.1%.
    expect(report.rssChange).toBeLessThanOrEqual(0.1);
  });
});
