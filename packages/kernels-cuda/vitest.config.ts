import { packageProject } from "../../vitest.project.ts";

export default packageProject("kernels-cuda", {
  include: ["src/**/*.test.ts"],
  // The host twins run the model's ops on one CPU thread, lane by lane: seconds per test.
  testTimeout: 300_000,
});
