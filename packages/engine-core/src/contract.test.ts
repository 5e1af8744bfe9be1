/** The backend contract (src/testing/contract.ts) on the reference backends and every fixture architecture. */
import { afterAll } from "vitest";
import { cleanup, fixture, MICRO } from "../test/models";
import { loadModel } from "./load";
import type { BackendName } from "./select";
import { describeBackendContract } from "./testing/contract";

afterAll(cleanup);

const CASES: [string, BackendName][] = [
  ["tiny-i2s", "reference"],
  ["tiny-tq2", "reference"],
  ["tiny-tq1", "reference"],
  [MICRO.name, "reference"],
  ["tiny-i2s", "reference-f64"],
];

for (const [name, backend] of CASES) {
  describeBackendContract(`${name} on ${backend}`, async () =>
    loadModel(await fixture(name), { backend, contextLength: 64 }),
  );
}
