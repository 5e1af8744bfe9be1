/**
 * Every kernel path the addon can name (native/kernels_dispatch.cc): x86 first, then AArch64.
 * "amx" is the AVX-512 VNNI kernels plus the AMX prefill GEMM; "auto" (not listed) picks the best
 * one the CPU has. Which of them a machine offers: `loadBinding().availablePaths()`.
 */
export const KERNEL_PATHS = [
  "scalar",
  "avx2",
  "avxvnni",
  "avx512vnni",
  "amx",
  "neon",
  "neon-dotprod",
  "neon-i8mm",
] as const;

/** A kernel path name. */
export type KernelPath = (typeof KERNEL_PATHS)[number];
