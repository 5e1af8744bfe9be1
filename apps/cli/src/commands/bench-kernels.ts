/**
 * `bitnet bench --backend cuda --kernels`: the ternary GEMV alone, against cuBLAS's bf16 GEMV on
 * the same shapes (the 2B-4T projections, one token), next to the GPU's copy bandwidth.
 */
import { EngineError, EngineErrorCode } from "@bitnet-ts/engine-core";
import type { CliIo } from "../program";
import { formatTable } from "../table";

export interface KernelBenchOptions {
  readonly backend: string | undefined;
  readonly json: boolean;
}

export async function runKernelBench(options: KernelBenchOptions, io: CliIo): Promise<void> {
  if (options.backend !== "cuda") {
    throw new EngineError(
      EngineErrorCode.BAD_OPTION,
      `could not run the kernel table - --kernels measures the CUDA kernels: add --backend cuda (got ${options.backend ?? "auto"}).`,
    );
  }
  const { CudaKernels } = await import("@bitnet-ts/kernels-cuda");
  const kernels = new CudaKernels();
  const device = kernels.requireDevice();
  io.stderr(`bitnet bench: timing the kernels on ${device.name}\n`);
  const copy = kernels.copyBandwidth(1 << 30, 10);
  const rows = kernels.kernelTable();
  if (options.json) {
    io.stdout(`${JSON.stringify({ device, copy_gbs: copy.gbs, kernels: rows }, null, 2)}\n`);
    return;
  }
  io.stdout(
    `${formatTable(
      [
        { header: "shape (rows × cols)" },
        { header: "ours µs", align: "right" },
        { header: "ours GB/s", align: "right" },
        { header: "% of copy", align: "right" },
        { header: "cuBLAS bf16 µs", align: "right" },
        { header: "cuBLAS / ours", align: "right" },
      ],
      rows.map((r) => [
        `${r.rows} × ${r.cols}`,
        r.oursUs.toFixed(1),
        r.oursGbs.toFixed(0),
        `${((100 * r.oursGbs) / copy.gbs).toFixed(0)}%`,
        r.cublasUs === null ? "n/a" : r.cublasUs.toFixed(1),
        r.speedup === null ? "n/a" : `${r.speedup.toFixed(2)}×`,
      ]),
    )}\n\nGPU copy bandwidth ${copy.gbs.toFixed(0)} GB/s (device to device, read + written)${
      rows.some((r) => r.cublasError !== undefined)
        ? `\ncuBLAS: ${rows.find((r) => r.cublasError !== undefined)!.cublasError}`
        : ""
    }\n`,
  );
}
