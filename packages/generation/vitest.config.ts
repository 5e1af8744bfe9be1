import { packageProject } from "../../vitest.project.ts";

export default packageProject("generation", {
  // Model-dependent tests run real forward passes on the reference backend.
  testTimeout: 120_000,
});
