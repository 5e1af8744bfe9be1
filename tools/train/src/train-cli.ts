/**
 * `pnpm train …`, `pnpm train:eval …`, `pnpm train:plot …`: runs the Python trainer
 * (tools/train/bitnet_train) with a Python that has PyTorch and SentencePiece, passing the
 * arguments through. The first argument names the module: train, evaluate or plot.
 */
import { spawnSync } from "node:child_process";
import { findTrainerPython, TRAIN_DIR } from "./python";

const [module, ...args] = process.argv.slice(2);
if (module === undefined || !["train", "evaluate", "plot"].includes(module)) {
  process.stderr.write(
    "usage: train-cli <train|evaluate|plot> [arguments for bitnet_train.<module>]\n",
  );
  process.exit(2);
}
const trainer = findTrainerPython();
if (trainer.python === undefined && module !== "plot") {
  process.stderr.write(`bitnet train: cannot run - ${trainer.missing}\n`);
  process.exit(1);
}
// Paths given relative to where pnpm was called from, not to tools/train.
const cwd = process.env["INIT_CWD"] ?? process.cwd();
const r = spawnSync(trainer.python ?? "python3", ["-m", `bitnet_train.${module}`, ...args], {
  cwd,
  stdio: "inherit",
  env: {
    ...process.env,
    PYTHONPATH: [TRAIN_DIR, process.env["PYTHONPATH"]].filter(Boolean).join(":"),
  },
});
process.exit(r.status ?? 1);
