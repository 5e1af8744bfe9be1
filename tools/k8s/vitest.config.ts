import { packageProject } from "../../vitest.project.ts";

export default packageProject(
  "k8s",
  {
    include: ["src/**/*.test.ts"],
    testTimeout: 120_000,
  },
  { sourceConditions: false },
);
