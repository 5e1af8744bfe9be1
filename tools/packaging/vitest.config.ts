import { packageProject } from "../../vitest.project.ts";

export default packageProject("packaging", {
  include: ["test/**/*.test.ts"],
  testTimeout: 120_000,
});
