/**
 * What every package's vitest project shares, said once: workspace packages resolved to their
 * sources (the "source" export condition), tests beside the code, the fixed fast-check seed
 * (vitest.setup.ts), limits for a busy machine, and the longest files first when a package runs
 * on its own (the root config's order otherwise).
 */
import { fileURLToPath } from "node:url";
import { defineProject, type UserWorkspaceConfig } from "vitest/config";
import { LongestFirstSequencer } from "./vitest.sequencer.ts";

type ProjectTestOptions = NonNullable<UserWorkspaceConfig["test"]>;

export function packageProject(
  name: string,
  test: ProjectTestOptions = {},
  options: { readonly sourceConditions?: boolean } = {},
): UserWorkspaceConfig {
  return defineProject({
    ...(options.sourceConditions === false ? {} : { resolve: { conditions: ["source"] } }),
    test: {
      name,
      include: ["src/**/*.test.ts", "test/**/*.test.ts"],
      setupFiles: [fileURLToPath(new URL("./vitest.setup.ts", import.meta.url))],
      // Limits for a busy machine: the suite runs two test files at once (scripts/test.mjs), and
      // vitest's defaults (5 s a test, 10 s a hook) assume a machine to itself.
      testTimeout: 60_000,
      hookTimeout: 60_000,
      sequence: { sequencer: LongestFirstSequencer },
      ...test,
    },
  });
}
