/**
 * The rules receipts from this backend are verified against (see @bitnet-ts/receipts): kernel ids
 * are "cuda.<op>.<type>.<variant>", one launch per projection, one attention launch per layer and
 * step (with its KV store), one embedding lookup per step.
 */
import { type KernelRules, ONE_CALL_PER_PROJECTION } from "@bitnet-ts/receipts/rules";

export const CUDA_KERNEL_RULES: KernelRules = {
  backends: ["cuda"],
  idPrefix: "cuda.",
  kernelPaths: null,
  pathSegment: 1,
  ternaryTags: {
    I2_S: [".linear.i2_s."],
    TQ2_0: [".linear.tq2_0."],
    // TQ1_0 runs on the 2-bit kernels after a lossless repack at load, and its ids say so.
    TQ1_0: [".linear.tq1_0_as_tq2_0."],
  },
  outputTag: ".output.",
  headOptions: {},
  calls: ONE_CALL_PER_PROJECTION,
};
