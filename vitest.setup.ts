/**
 * Property tests run with a fixed seed by default so CI is reproducible; a long fuzzing run
 * (BITNET_FUZZ_RUNS set) explores new cases with a random seed. BITNET_FUZZ_SEED pins any run
 * (fast-check prints the seed of every failure).
 */
import * as fc from "fast-check";

const seed = process.env["BITNET_FUZZ_SEED"];
if (seed !== undefined) {
  fc.configureGlobal({ seed: Number(seed) });
} else if (process.env["BITNET_FUZZ_RUNS"] === undefined) {
  fc.configureGlobal({ seed: 20261123 });
}
