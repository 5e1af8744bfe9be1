/**
 * `pnpm --filter @bitnet-ts/train compare <model.gguf> <golden-dir> [--backends cpu,reference]
 * [--threads N] [--json]`: the engine against the trainer's PyTorch forward, as a table.
 */
import { parseArgs } from "node:util";
import type { BackendName } from "@bitnet-ts/engine-core";
import {
  compareWithPytorch,
  formatComparison,
  type PytorchComparison,
  readGolden,
} from "./compare";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    backends: { type: "string", default: "cpu,reference" },
    threads: { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help || positionals.length !== 2) {
  process.stderr.write(
    "usage: compare <model.gguf> <golden-dir> [--backends cpu,reference] [--threads N] [--json]\n",
  );
  process.exit(values.help ? 0 : 2);
}
// Paths are relative to where pnpm was called from, not to the repository root it runs in.
process.chdir(process.env["INIT_CWD"] ?? process.cwd());
const [model, dir] = positionals as [string, string];
const threads = values.threads === undefined ? undefined : Number(values.threads);
if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) {
  process.stderr.write(`compare: --threads must be a positive integer, got ${values.threads}\n`);
  process.exit(2);
}
try {
  const data = readGolden(dir);
  const rows: PytorchComparison[] = [];
  for (const backend of values.backends.split(",")) {
    process.stderr.write(`compare: ${backend}…\n`);
    rows.push(
      await compareWithPytorch(model, data, {
        backend: backend as BackendName,
        ...(threads === undefined ? {} : { threads }),
      }),
    );
  }
  process.stdout.write(
    values.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatComparison(rows)}\n`,
  );
} catch (error) {
  process.stderr.write(`compare: ${(error as Error).message}\n`);
  process.exit(1);
}
