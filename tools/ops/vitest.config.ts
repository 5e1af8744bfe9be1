import { packageProject } from "../../vitest.project.ts";

export default packageProject("ops", {
  include: ["src/**/*.test.ts"],
  testTimeout: 300_000,
});
