import { packageProject } from "../../vitest.project.ts";

export default packageProject(
  "web",
  {
    include: ["test/**/*.test.ts"],
    // Real Chromium, real models: loads and generations take seconds (SwiftShader, reference backend).
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
  { sourceConditions: false },
);
