/**
 * Kernel-count rules: what each backend declares about the kernel ids it reports, so that the
 * verifier checks receipts from any backend (the CPU's, a GPU's, the reference's) against the
 * backend's own rules instead of rules hard-coded for one of them. A backend package exports its
 * rules as plain data (`kernelRules`); loading them runs no native code.
 */

export interface KernelRules {
  /** Backend names a receipt may carry for these rules (e.g. ["reference", "reference-f64"]). */
  readonly backends: readonly string[];
  /** Every kernel id of the backend starts with this ("cpu.", "ref."). */
  readonly idPrefix: string;
  /**
   * The kernel paths a receipt of this backend must name, each with the path tags its kernel ids
   * may carry in dot-separated segment `pathSegment` (the CPU's "amx" path also runs its
   * "avx512vnni" kernels); null when the backend has no kernel paths.
   */
  readonly kernelPaths: Readonly<Record<string, readonly string[]>> | null;
  /** Which dot-separated segment of an id holds its path tag (ignored without kernelPaths). */
  readonly pathSegment: number;
  /** Substrings of the ids of the kernels that run each ternary weight type (I2_S → [".linear.i2_s."]). */
  readonly ternaryTags: Readonly<Record<string, readonly string[]>>;
  /** The head kernels' ids contain this, followed by the head's type in lower case (".output."). */
  readonly outputTag: string;
  /**
   * Head types the backend may run although no tensor of the model has them, by the receipt
   * option that turns them on (e.g. `head_q8_0: "Q8_0"`: the CPU requantizes an F16 head).
   */
  readonly headOptions: Readonly<Record<string, string>>;
  /** Kernel calls per forward step. */
  readonly calls: {
    /** Substring of the embedding kernel ids: one call per forward step. */
    readonly embedTag: string;
    /** Substring of the projection kernel ids. */
    readonly linearTag: string;
    /** Substring of the attention kernel ids. */
    readonly attentionTag: string;
    /** Projection kernel calls per layer and step, by GGUF architecture (none: not checked). */
    readonly linearPerLayer: Readonly<Record<string, number>>;
    /** Attention kernel calls per layer and step. */
    readonly attentionPerLayer: number;
  };
}

/** Projections per layer in the architectures this engine runs (q, k, v, o, gate, up, down). */
export const SEVEN_PROJECTIONS: Readonly<Record<string, number>> = {
  "bitnet-b1.58": 7,
  "bitnet-25": 7,
  "bitnet-1.58": 7,
  bitnet: 7,
};

/**
 * The call counts of a backend that runs one kernel call per projection (q, k, v, o, gate, up,
 * down: seven per layer), one attention call per layer and one embedding lookup per step, with
 * ids tagged ".embed.", ".linear." and ".attention." (the reference and CPU backends).
 */
export const ONE_CALL_PER_PROJECTION: KernelRules["calls"] = {
  embedTag: ".embed.",
  linearTag: ".linear.",
  attentionTag: ".attention.",
  linearPerLayer: SEVEN_PROJECTIONS,
  attentionPerLayer: 1,
};
