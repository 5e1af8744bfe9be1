import { packageProject } from "../../vitest.project.ts";

export default packageProject("train", {
  include: ["src/**/*.test.ts"],
  testTimeout: 600_000,
});
