/**
 * Memory read bandwidth as the kernels see it: the bound decode speed is measured against
 * (bytes read per generated token / bandwidth).
 */
import * as fs from "node:fs";
import type { BandwidthProbe } from "./binding";
import { loadBinding } from "./loader";

export interface BandwidthResult {
  /** Best repetition (GB/s, 10^9 bytes): what the memory can deliver. */
  readonly bestGbs: number;
  readonly medianGbs: number;
  readonly samples: readonly number[];
  readonly bytes: number;
  readonly threads: number;
}

export interface MeasureBandwidthOptions {
  /** Read this file through a read-only mapping (as mmap'd weights are read); default: anonymous huge-page memory. */
  readonly path?: string;
  readonly threads: number;
  /** Bytes per repetition (default: the whole file, or 1 GiB of anonymous memory). */
  readonly bytes?: number;
  /** Timed repetitions after one warm-up (default 5). */
  readonly reps?: number;
  readonly kernelPath?: string;
}

/**
 * Measures read bandwidth with the addon's streaming loops, every thread reading its contiguous
 * share; each repetition reads the region in each of the addon's ways (plain loads, and two
 * software-prefetch patterns) and keeps the fastest, so the figure is an upper bound for every
 * kernel.
 *
 * @example
 * const { bestGbs } = await measureReadBandwidth({ threads: 2 });
 */
export async function measureReadBandwidth(
  options: MeasureBandwidthOptions,
): Promise<BandwidthResult> {
  const bytes =
    options.bytes ?? (options.path === undefined ? 2 ** 30 : fs.statSync(options.path).size);
  const reps = options.reps ?? 5;
  const probe: BandwidthProbe = {
    ...(options.path === undefined ? {} : { path: options.path, offset: 0 }),
    bytes,
    threads: options.threads,
    reps: reps + 1,
    ...(options.kernelPath === undefined ? {} : { kernelPath: options.kernelPath }),
  };
  const samples = (await loadBinding().measureBandwidth(probe)).slice(1); // the first pass warms caches and TLBs
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    bestGbs: sorted.at(-1)!,
    medianGbs: sorted[Math.floor(sorted.length / 2)]!,
    samples,
    bytes,
    threads: options.threads,
  };
}
