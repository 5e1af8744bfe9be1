import { useLavapipe } from "../../vitest.lavapipe.ts";
import { packageProject } from "../../vitest.project.ts";

// The WebGPU cross-validation runs on lavapipe where there is no GPU driver.
useLavapipe();

export default packageProject("crossval", {
  // Model-dependent tests run real forward passes on the reference backend.
  testTimeout: 120_000,
});
