#!/usr/bin/env node
// Records each test file's duration (seconds) from vitest JSON reports into
// scripts/test-durations.json, per architecture, for vitest.sequencer.ts (longest files first).
// After a full run (`bash .ci/run` or `pnpm test`):
//   node scripts/test-durations.mjs x64 .cache/vitest-report.json
// (Nothing is recorded for the arm64 phase under qemu, whose files were slower longest first:
// see vitest.sequencer.ts.)
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.join(repo, "scripts/test-durations.json");
const [arch, ...reports] = process.argv.slice(2);
if (arch === undefined || reports.length === 0) {
  console.error("usage: node scripts/test-durations.mjs <x64|arm64> <vitest JSON report>...");
  process.exit(2);
}
const all = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, "utf8")) : {};
const durations = {};
for (const report of reports) {
  const json = JSON.parse(fs.readFileSync(report, "utf8"));
  for (const file of json.testResults) {
    // Reports name files by absolute path; a clone elsewhere has another prefix.
    const relative = path.relative(repo, file.name);
    const key = relative.startsWith("..")
      ? file.name.replace(/^.*?\/(packages|apps|tools)\//, "$1/")
      : relative;
    durations[key] = Math.round((file.endTime - file.startTime) / 100) / 10;
  }
}
all[arch] = Object.fromEntries(Object.entries(durations).sort(([a], [b]) => a.localeCompare(b)));
fs.writeFileSync(out, `${JSON.stringify(all, null, 2)}\n`);
console.log(
  `${Object.keys(durations).length} files (${arch}) → ${path.relative(process.cwd(), out)}`,
);
