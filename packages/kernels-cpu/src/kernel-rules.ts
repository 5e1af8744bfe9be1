/**
 * The rules receipts from this backend are verified against (see @bitnet-ts/receipts): kernel ids
 * are "cpu.<path>.<op>.<type>…", one projection call per projection (no fused ids), one
 * attention call per layer and step, one embedding lookup per step.
 */
import { type KernelRules, ONE_CALL_PER_PROJECTION } from "@bitnet-ts/receipts";

export const CPU_KERNEL_RULES: KernelRules = {
  backends: ["cpu"],
  idPrefix: "cpu.",
  // The AMX path runs the AVX-512 VNNI kernels for everything but batched projections.
  kernelPaths: {
    scalar: ["scalar"],
    avx2: ["avx2"],
    avxvnni: ["avxvnni"],
    avx512vnni: ["avx512vnni"],
    amx: ["amx", "avx512vnni"],
    neon: ["neon"],
    "neon-dotprod": ["neon-dotprod"],
    "neon-i8mm": ["neon-i8mm"],
  },
  pathSegment: 1,
  ternaryTags: {
    I2_S: [".linear.i2_s."],
    TQ2_0: [".linear.tq2_0."],
    // TQ1_0 runs on the TQ2_0 kernels after a lossless repack at load, and its ids say so.
    TQ1_0: [".linear.tq1_0.", ".linear.tq1_0_as_tq2_0."],
  },
  outputTag: ".output.",
  headOptions: { head_q8_0: "Q8_0", head_q6_k: "Q6_K" },
  calls: ONE_CALL_PER_PROJECTION,
};
