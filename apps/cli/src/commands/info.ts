/**
 * `bitnet info`: what this machine has (device-probe: facts about the hardware) and which
 * backends can run here (engine-core: each backend package really loaded and asked).
 */
import { cpuSimdLevel, probeDevice } from "@bitnet-ts/device-probe";
import { autoOrder, type BackendStatus, probeBackends } from "@bitnet-ts/engine-core";
import { formatBytes } from "../table";

function backendLine(s: BackendStatus): string {
  if (!s.available) {
    return `${s.name.padEnd(13)}unavailable: ${s.reason?.split("\n")[0]}`;
  }
  const d = s.description!;
  const details = Object.entries(d.details)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return `${s.name.padEnd(13)}${d.device}${details === "" ? "" : ` [${details}]`}`;
}

export async function runInfo(options: { json?: boolean }): Promise<string> {
  const d = probeDevice();
  const backends = await probeBackends();
  const available = new Set(backends.filter((b) => b.available).map((b) => b.name));
  // "auto" takes the first backend of its order that can run here.
  const auto = autoOrder(d).find((name) => available.has(name)) ?? "reference";
  if (options.json) {
    return `${JSON.stringify({ ...d, cpu_simd: cpuSimdLevel(d.cpu), backends, auto_backend: auto }, null, 2)}\n`;
  }
  const features = Object.entries(d.cpu.features)
    .filter(([, v]) => v)
    .map(([k]) => k)
    .join(" ");
  const lines = [
    `platform     ${d.platform} ${d.osRelease}, Node ${d.node}`,
    `cpu          ${d.cpu.model} (${d.cpu.vendor}, ${d.cpu.arch})`,
    `cores        ${d.cpu.physicalCores} physical, ${d.cpu.logicalCores} logical`,
    `simd         ${features || "none detected"}`,
    `caches       ${d.cpu.caches.map((c) => `L${c.level} ${c.type} ${formatBytes(c.sizeBytes)}`).join(", ") || "unknown"}`,
    `memory       ${formatBytes(d.memory.totalBytes)} total, ${formatBytes(d.memory.availableBytes)} available`,
    `nvidia gpus  ${d.cuda.gpuPresent ? d.cuda.devices.map((g) => `${g.name} (sm ${g.computeCapability}, ${formatBytes(g.memoryBytes)})`).join(", ") : `none: ${d.cuda.reason}`}${d.cuda.runtimeVersion ? ` [toolkit ${d.cuda.runtimeVersion}]` : ""}`,
    `metal gpu    ${d.metal.gpuPresent ? (d.metal.device ?? "present") : `none: ${d.metal.reason}`}`,
    "",
    "backends",
    ...backends.map((b) => `  ${backendLine(b)}`),
    "",
    `auto         ${auto}${auto === "reference" ? " (the slow TypeScript reference: no native backend can run here)" : ""}`,
  ];
  return `${lines.join("\n")}\n`;
}
