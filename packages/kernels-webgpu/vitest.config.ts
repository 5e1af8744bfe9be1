import { useLavapipe } from "../../vitest.lavapipe.ts";
import { packageProject } from "../../vitest.project.ts";

// Lavapipe (software Vulkan) unless a driver is already chosen, so `vitest run --project
// kernels-webgpu` finds an adapter without the test runner.
useLavapipe();

export default packageProject("kernels-webgpu", {
  testTimeout: 120_000,
  hookTimeout: 300_000,
});
