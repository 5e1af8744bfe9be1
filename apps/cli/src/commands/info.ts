/** `bitnet info`: what this machine has (device-probe) and which backends can run. */
import { autoBackendOrder, bestCpuPath, probeDevice } from "@bitnet-ts/device-probe";
import { formatBytes } from "../table";

export async function runInfo(options: { json?: boolean }): Promise<string> {
  const d = probeDevice();
  if (options.json) {
    return `${JSON.stringify({ ...d, simd_path: bestCpuPath(d.cpu), auto_backend_order: autoBackendOrder(d) }, null, 2)}\n`;
  }
  const features = Object.entries(d.cpu.features)
    .filter(([, v]) => v)
    .map(([k]) => k)
    .join(" ");
  const lines = [
    `platform     ${d.platform} ${d.osRelease}, Node ${d.node}`,
    `cpu          ${d.cpu.model} (${d.cpu.vendor}, ${d.cpu.arch})`,
    `cores        ${d.cpu.physicalCores} physical, ${d.cpu.logicalCores} logical`,
    `simd         ${features || "none detected"} → kernels: ${bestCpuPath(d.cpu)}`,
    `caches       ${d.cpu.caches.map((c) => `L${c.level} ${c.type} ${formatBytes(c.sizeBytes)}`).join(", ") || "unknown"}`,
    `memory       ${formatBytes(d.memory.totalBytes)} total, ${formatBytes(d.memory.availableBytes)} available`,
    `cuda         ${d.cuda.available ? d.cuda.devices.map((g) => `${g.name} (sm ${g.computeCapability}, ${formatBytes(g.memoryBytes)})`).join(", ") : `unavailable: ${d.cuda.reason}`}${d.cuda.runtimeVersion ? ` [toolkit ${d.cuda.runtimeVersion}]` : ""}`,
    `metal        ${d.metal.available ? (d.metal.device ?? "available") : `unavailable: ${d.metal.reason}`}`,
    `auto backend ${autoBackendOrder(d).join(" → ")}`,
  ];
  return `${lines.join("\n")}\n`;
}
