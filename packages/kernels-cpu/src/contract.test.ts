/**
 * The engine's backend contract (engine-core/testing) on every kernel path the addon can name,
 * those this CPU cannot run registered as skipped with the reason, and on TQ1_0 with the path
 * "auto" picks and an odd thread count.
 */
import { describeBackendContract } from "@bitnet-ts/engine-core/testing";
import { afterAll, describe } from "vitest";
import { cleanup, cpuModel, LONG_PROMPT } from "../test/models";
import { ALL_KERNEL_PATHS, pathSkipReason, pathTitle } from "../test/paths";

afterAll(cleanup);

const OTHER = [
  128000, 5451, 5304, 264, 892, 11, 358, 1093, 279, 16053, 5679, 13, 578, 4062, 14198, 39935, 35308,
];

// Every kernel path the addon can name; those this CPU cannot run are registered as skipped.
for (const kernelPath of ALL_KERNEL_PATHS) {
  describe.skipIf(pathSkipReason(kernelPath) !== undefined)(
    `kernel path ${pathTitle(kernelPath)}`,
    () => {
      describeBackendContract(
        `tiny-i2s on cpu (${kernelPath}, 2 threads)`,
        () => cpuModel("tiny-i2s", { kernelPath, threads: 2 }),
        {
          prompt: LONG_PROMPT,
          other: OTHER,
        },
      );
    },
  );
}
describeBackendContract(
  "tiny-tq1 on cpu (auto, 3 threads)",
  () => cpuModel("tiny-tq1", { threads: 3 }),
  {
    prompt: LONG_PROMPT,
    other: OTHER,
  },
);
