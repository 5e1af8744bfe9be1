/** Finding a Python that can run the trainer (PyTorch and SentencePiece importable). */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** tools/train, where the bitnet_train Python package lives. */
export const TRAIN_DIR: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export const GCIDE_PATH: string = "/usr/share/dictd/gcide.dict.dz";

export interface TrainerPython {
  readonly python?: string;
  /** Why the trainer cannot run here, when it cannot. */
  readonly missing?: string;
}

/** The first of $BITNET_PYTHON, python3 and /usr/bin/python3 that imports torch and sentencepiece. */
export function findTrainerPython(): TrainerPython {
  const candidates = [process.env["BITNET_PYTHON"], "python3", "/usr/bin/python3"].filter(
    (c): c is string => c !== undefined && c !== "",
  );
  for (const python of candidates) {
    const r = spawnSync(python, ["-c", "import torch, sentencepiece"], { encoding: "utf8" });
    if (r.status === 0) {
      return fs.existsSync(GCIDE_PATH)
        ? { python }
        : { missing: `${GCIDE_PATH} is missing (apt-get install dict-gcide)` };
    }
  }
  return {
    missing: `no Python with torch and sentencepiece (tried ${candidates.join(", ")}; apt-get install python3-torch python3-sentencepiece)`,
  };
}

/** Runs `python -m bitnet_train.<module> ...args` in tools/train; throws with its output on failure. */
export function runTrainer(python: string, module: string, args: readonly string[]): string {
  const r = spawnSync(python, ["-m", `bitnet_train.${module}`, ...args], {
    cwd: TRAIN_DIR,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    throw new Error(`bitnet_train.${module} exited with ${r.status}:\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}
