/** What the op-by-op suites of the native backend share: its tolerances and one candidate per kernel path. */
import type { CompiledModel } from "@bitnet-ts/engine-core";
import type { OpByOpCandidate, OpTolerances } from "@bitnet-ts/engine-core/testing";
import { ALL_KERNEL_PATHS, pathSkipReason } from "./paths";

/**
 * The native ops' bounds against the reference, relative to each buffer's scale. Ternary linear
 * ops, embeddings, adds and the squared-ReLU gate are integer-exact or single-rounding ops: bit
 * for bit. The rest (different but equally valid summation orders or libm calls) get bounds; at
 * the 2B-4T width (ops-2b4t.test.ts) every kind but the output head measured 0.
 */
export const CPU_OP_TOLERANCES: OpTolerances = {
  embed: 0,
  linear_ternary: 0, // exact integer dot products, scales applied in the reference's order
  linear_float: 2e-6, // f32 sums in SIMD lanes
  rms_norm: 1e-6, // Σx² in double: in SIMD lanes instead of in order (measured: 0)
  rope: 1e-6, // sin/cos from libm instead of V8's fdlibm (measured: 0)
  attention: 1e-6, // exp from libm / in double (measured: 0)
  add: 0,
  glu_relu2: 0,
  glu_silu: 1e-6, // exp (measured: 0)
  output: 1e-6, // f16 head: f32 sums in SIMD lanes (measured: 5.3e-7 tiny, 2.8e-7 at 2B-4T width)
};

/** Kinds every BitNet graph has (the suites fail if one goes missing); the gate's activation varies. */
export const BITNET_OP_KINDS = [
  "add",
  "attention",
  "embed",
  "linear_ternary",
  "output",
  "rms_norm",
  "rope",
] as const;

/** One candidate per kernel path the addon can name; those this machine cannot run are skipped with the reason. */
export function kernelPathCandidates(
  load: (kernelPath: string) => Promise<CompiledModel>,
): OpByOpCandidate[] {
  return ALL_KERNEL_PATHS.map((kernelPath) => ({
    name: `the ${kernelPath} path`,
    load: () => load(kernelPath),
    skip: pathSkipReason(kernelPath),
  }));
}
