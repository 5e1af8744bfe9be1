import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PRESETS, writeFixture } from "@bitnet-ts/fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatReplicas, haproxyMissing, runReplicas } from "./replicas";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bitnet-replicas-test-"));
const model = path.join(tmp, "tiny-i2s.gguf");
const missing = haproxyMissing();

beforeAll(async () => {
  await writeFixture(PRESETS["tiny-i2s"]!, model);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("three replicas behind HAProxy", () => {
  it.skipIf(missing !== undefined)(
    `one killed and one restarted under load: no request lost but streams on the killed one${missing ? ` (skipped: ${missing})` : ""}`,
    { timeout: 300_000 },
    async () => {
      const report = await runReplicas({ model, requests: 600, connections: 12, streams: 6 });
      console.log(formatReplicas(report));
      // Every whole request was answered: those on the killed replica were re-sent by HAProxy.
      expect(report.requests).toBe(600);
      expect(report.ok).toBe(600);
      expect(report.non2xx + report.errors + report.timeouts).toBe(0);
      // HAProxy stopped routing to the dead replica within its checks (2 × 500 ms, plus one
      // interval of phase).
      expect(report.detectDownMs).toBeLessThanOrEqual(
        report.checkIntervalMs * (report.checkFall + 1) + 250,
      );
      // The restarted replica came back and took requests after the kill.
      expect(report.backUpMs).toBeLessThan(10_000);
      expect(report.perReplica["r3"]).toBeGreaterThan(0);
      // Only streams can be lost, and only those that were on the killed replica (at most its
      // share of them); each says why.
      expect(report.streamsDone + report.streamsCut).toBe(6);
      expect(report.streamsCut).toBeLessThanOrEqual(3);
      expect(report.cutErrors).toHaveLength(report.streamsCut);
    },
  );
});
