/**
 * The CUDA addon's surface, typed, with argument checks and typed errors: device status, the
 * op-level kernels (for tests against the reference ops and for the kernel bench) and timings.
 */
import { CudaError, CudaUnavailableError, loadAddon } from "./loader";

/** One GPU as the CUDA runtime reports it. */
export interface CudaDevice {
  readonly name: string;
  /** e.g. "9.0" for an H100/H200. */
  readonly computeCapability: string;
  readonly smCount: number;
  readonly totalMemoryBytes: number;
  readonly memoryBusBits: number;
  readonly memoryClockKHz: number;
}

/** What the addon sees: the runtime it was built with and the devices, or CUDA's reason for none. */
export interface CudaStatus {
  /** The CUDA runtime version the addon was built with, e.g. 13000 (0 without GPU code). */
  readonly runtimeVersion: number;
  /** False for an addon built without a CUDA toolkit: the host twins only. */
  readonly deviceCode: boolean;
  readonly deviceCount: number;
  readonly devices: readonly CudaDevice[];
  /** Set when the driver could not be asked (no driver, too old a driver, no device). */
  readonly error?: string;
}

/** Which I2_S kernel a timing runs: as a step picks it, or one forced. */
export type TernaryKernel = "auto" | "dp4a" | "tensor-cores";
const TERNARY_KERNELS: readonly TernaryKernel[] = ["auto", "dp4a", "tensor-cores"];

/** Where an op runs: on the GPU, or on the CPU through the same per-chunk arithmetic (tests). */
export type Where = "device" | "host";

export interface I2sLinearInput {
  /** The I2_S tensor's code bytes, rows × cols/4 (the file's bytes, without the scale tail). */
  readonly codes: Uint8Array;
  readonly rows: number;
  /** Columns per row, a multiple of 128 (one I2_S block). */
  readonly cols: number;
  /** The tensor's scale (I2_S stores one per tensor). */
  readonly scale: number;
  /** tokens × cols activations. */
  readonly x: Float32Array;
  readonly tokens: number;
}

export interface I2sLinearOutput {
  /** tokens × rows outputs. */
  readonly y: Float32Array;
  /** The int8 activations, tokens × cols. */
  readonly q: Int8Array;
  /** Per token: the quantization scale (127 / max|x|) and Σq. */
  readonly actScale: Float32Array;
  readonly actSum: Int32Array;
}

interface Addon {
  status(): CudaStatus;
  i2sLinear(
    codes: Uint8Array,
    rows: number,
    cols: number,
    scale: number,
    x: Float32Array,
    tokens: number,
    where: Where,
  ): I2sLinearOutput;
  f16Linear(
    w: Uint16Array,
    rows: number,
    cols: number,
    x: Float32Array,
    tokens: number,
  ): Float32Array;
  topK(
    logits: Float32Array,
    rows: number,
    vocab: number,
    k: number,
    where: Where,
  ): { ids: Int32Array; values: Float32Array };
  readonly maxDeviceTopK: number;
  timeI2sGemv(rows: number, cols: number, tokens: number, reps: number, kernel: number): number;
  timeCopy(bytes: number, reps: number): number;
  timeCublasBf16Gemv(
    rows: number,
    cols: number,
    reps: number,
    library: string,
  ): { ms: number; library: string };
}

/** One row of the kernel table: our ternary GEMV against cuBLAS's bf16 GEMV on one shape. */
export interface KernelTableRow {
  readonly rows: number;
  readonly cols: number;
  /** Our I2_S GEMV (one token): median µs, and the rate it reads the 2-bit codes. */
  readonly oursUs: number;
  readonly oursGbs: number;
  /** cuBLAS bf16 GEMV (cublasGemmEx) on the same shape, or why it could not run. */
  readonly cublasUs: number | null;
  readonly cublasError?: string;
  /** cuBLAS time / ours (above 1: ours is faster). */
  readonly speedup: number | null;
}

/** The 2B-4T projection shapes (rows × cols): q/o, fused q/k/v, fused gate/up, down. */
export const KERNEL_TABLE_SHAPES: readonly (readonly [number, number])[] = [
  [2560, 2560],
  [3840, 2560],
  [13824, 2560],
  [2560, 6912],
];

/** Runs `f`, turning the addon's errors into typed ones (argument errors stay as they are). */
function native<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw error;
    }
    throw new CudaError(`could not ${what} on the GPU - ${(error as Error).message}.`, {
      cause: error,
    });
  }
}

/** The CUDA kernels of one loaded addon. */
export class CudaKernels {
  readonly #addon: Addon;

  /** Loads the addon (build/Release, or `addonPath`); throws CudaUnavailableError with the reason. */
  constructor(addonPath?: string) {
    this.#addon = loadAddon(addonPath) as Addon;
  }

  /** The runtime and the devices; never throws (a machine without a GPU gives `error`). */
  status(): CudaStatus {
    return this.#addon.status();
  }

  /** Throws CudaUnavailableError unless a CUDA device can run the kernels. */
  requireDevice(): CudaDevice {
    const s = this.status();
    if (s.deviceCount === 0 || s.devices[0] === undefined) {
      throw new CudaUnavailableError(
        `could not use a CUDA GPU - ${s.error ?? "the driver reports no CUDA device"}.`,
      );
    }
    return s.devices[0];
  }

  /**
   * Per-token int8 quantization of `x` (absmax, as bitnet.cpp) and the I2_S matrix product,
   * on the GPU or (where: "host") through the same arithmetic on the CPU.
   */
  i2sLinear(input: I2sLinearInput, where: Where = "device"): I2sLinearOutput {
    const { codes, rows, cols, scale, x, tokens } = input;
    if (!Number.isInteger(cols) || cols % 128 !== 0 || cols <= 0) {
      throw new RangeError(`cols must be a positive multiple of 128 (one I2_S block), got ${cols}`);
    }
    return native("run the I2_S linear", () =>
      this.#addon.i2sLinear(codes, rows, cols, scale, x, tokens, where),
    );
  }

  /** The largest k a step's row (or topK) selects on the GPU; larger k comes back as the full row. */
  get maxDeviceTopK(): number {
    return this.#addon.maxDeviceTopK;
  }

  /**
   * Each row's k best logits, ranked as engine-core's topKRows (higher value, then lower id; NaN
   * after every number): the selection a step runs on the GPU, or (where: "host") its host twin.
   * `ids` and `values` are [rows × k].
   */
  topK(
    logits: Float32Array,
    rows: number,
    vocab: number,
    k: number,
    where: Where = "device",
  ): { ids: Int32Array; values: Float32Array } {
    return native("select the top-k", () => this.#addon.topK(logits, rows, vocab, k, where));
  }

  /** y = W x for an f16 matrix (rows × cols, as f16 bits) and `tokens` f32 rows of x, on the GPU. */
  f16Linear(
    w: Uint16Array,
    rows: number,
    cols: number,
    x: Float32Array,
    tokens: number,
  ): Float32Array {
    return native("run the f16 linear", () => this.#addon.f16Linear(w, rows, cols, x, tokens));
  }

  /**
   * The I2_S projection on a rows × cols matrix in GPU memory for `tokens` tokens: the median of
   * `reps` runs, the rate at which it read the codes, and its integer multiply-adds per second.
   * `kernel`: "auto" as a step picks it (dp4a passes of up to eight tokens, tensor-core tiles from
   * 16 tokens on), or either forced.
   */
  timeI2sGemv(
    rows: number,
    cols: number,
    tokens: number = 1,
    reps: number = 20,
    kernel: TernaryKernel = "auto",
  ): { ms: number; gbs: number; tops: number } {
    const ms = native("time the I2_S GEMV", () =>
      this.#addon.timeI2sGemv(rows, cols, tokens, reps, TERNARY_KERNELS.indexOf(kernel)),
    );
    return {
      ms,
      gbs: (rows * cols) / 4 / (ms * 1e6),
      tops: (2 * rows * cols * tokens) / (ms * 1e9),
    };
  }

  /**
   * The kernel table: our I2_S GEMV and cuBLAS's bf16 GEMV on each shape (cuBLAS loaded at run
   * time from `cublasLibrary`, BITNET_CUBLAS_PATH or the usual sonames).
   */
  kernelTable(
    shapes: readonly (readonly [number, number])[] = KERNEL_TABLE_SHAPES,
    reps: number = 50,
    cublasLibrary: string = process.env["BITNET_CUBLAS_PATH"] ?? "",
  ): KernelTableRow[] {
    return shapes.map(([rows, cols]) => {
      const ours = this.timeI2sGemv(rows, cols, 1, reps);
      try {
        const theirs = this.#addon.timeCublasBf16Gemv(rows, cols, reps, cublasLibrary);
        return {
          rows,
          cols,
          oursUs: ours.ms * 1000,
          oursGbs: ours.gbs,
          cublasUs: theirs.ms * 1000,
          speedup: theirs.ms / ours.ms,
        };
      } catch (error) {
        return {
          rows,
          cols,
          oursUs: ours.ms * 1000,
          oursGbs: ours.gbs,
          cublasUs: null,
          cublasError: (error as Error).message,
          speedup: null,
        };
      }
    });
  }

  /** Device-to-device copy bandwidth (bytes read + written per second), median of `reps`. */
  copyBandwidth(bytes: number = 1 << 30, reps: number = 10): { ms: number; gbs: number } {
    const ms = native("time a device copy", () => this.#addon.timeCopy(bytes, reps));
    return { ms, gbs: (2 * bytes) / (ms * 1e6) };
  }
}

export { CudaError, CudaUnavailableError };
