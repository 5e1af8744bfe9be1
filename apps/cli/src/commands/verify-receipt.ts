/** `bitnet verify-receipt`: the receipt gates as a table, a verdict, and the exit code. */
import * as fs from "node:fs";
import { kernelRulesFor } from "@bitnet-ts/engine-core";
import { BitnetError } from "@bitnet-ts/errors";
import { formatVerifyReport, verifyReceipt } from "@bitnet-ts/receipts";
import { CliInputError } from "../errors";
import type { CliIo } from "../program";
import { replayReceipt } from "../receipt";

export async function runVerifyReceipt(
  file: string,
  options: { model?: string; replay?: boolean; json?: boolean },
  io: CliIo,
): Promise<boolean> {
  let input: unknown;
  try {
    input = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    throw new CliInputError(
      `could not read receipt ${file} - ${(error as Error).message.split("\n")[0]}.`,
    );
  }
  // The backend's own kernel-count rules (from its package; no native code runs).
  const backendName = (input as { backend?: { name?: unknown } } | null)?.backend?.name;
  let kernelRules: Awaited<ReturnType<typeof kernelRulesFor>> | undefined;
  if (typeof backendName === "string") {
    try {
      kernelRules = await kernelRulesFor(backendName);
    } catch (error) {
      io.stderr(`bitnet verify-receipt: ${(error as Error).message}\n`);
    }
  }
  // A replay loads the receipt's own model path when -m is not given: that file is hashed first
  // (the model_file gate), so a replay never vouches for a file the receipt does not describe.
  const recordedPath = (input as { model?: { path?: unknown } } | null)?.model?.path;
  const modelPath =
    options.model ??
    (options.replay && typeof recordedPath === "string" ? recordedPath : undefined);
  const report = await verifyReceipt(input, {
    ...(kernelRules === undefined ? {} : { kernelRules }),
    ...(modelPath === undefined ? {} : { modelPath }),
    ...(options.replay
      ? {
          replay: (receipt) => {
            const model = options.model ?? receipt.model.path;
            if (!fs.existsSync(model)) {
              throw new CliInputError(
                `could not replay - the model ${model} is not there; pass it with -m.`,
              );
            }
            return replayReceipt(receipt, model);
          },
        }
      : {}),
    onProgress: (line) => io.stderr(`bitnet verify-receipt: ${line}\n`),
  });
  if (options.json) {
    io.stdout(`${JSON.stringify({ ok: report.ok, gates: report.gates })}\n`);
  } else {
    io.stdout(`${formatVerifyReport(report, file)}\n`);
  }
  if (!report.ok) {
    const failed = report.gates.filter((g) => g.status === "fail").map((g) => g.gate);
    throw new ReceiptRejectedError(`receipt ${file} failed ${failed.join(", ")}`);
  }
  return true;
}

/** A receipt failed a gate (exit code 1 after the table). */
export class ReceiptRejectedError extends BitnetError {
  constructor(message: string) {
    super("RECEIPT_REJECTED", message);
  }
}
