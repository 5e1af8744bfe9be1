/**
 * `bitnet info`: what this machine has (device-probe: facts about the hardware), the WebGPU
 * adapter Dawn finds (kernels-webgpu's requestAdapter), and which backends can run here
 * (engine-core: each backend package really loaded and asked).
 */
import { cpuSimdLevel, probeDevice } from "@bitnet-ts/device-probe";
import { autoOrder, type BackendStatus, probeBackends } from "@bitnet-ts/engine-core";
import type { AdapterReport } from "@bitnet-ts/kernels-webgpu";
import { formatBytes } from "../table";

/** The WebGPU adapter, or why there is none. */
export interface WebGpuInfo {
  readonly available: boolean;
  readonly adapter?: AdapterReport;
  readonly reason?: string;
}

/** The limits the WebGPU kernels size their buffers and workgroups by. */
const KEY_LIMITS: readonly { name: string; bytes: boolean }[] = [
  { name: "maxStorageBufferBindingSize", bytes: true },
  { name: "maxBufferSize", bytes: true },
  { name: "maxComputeWorkgroupStorageSize", bytes: true },
  { name: "maxComputeInvocationsPerWorkgroup", bytes: false },
  { name: "maxComputeWorkgroupSizeX", bytes: false },
];

/**
 * Asks Dawn for an adapter (no device is created). The package is imported here, not at the top,
 * so `bitnet info` still works when it (or Dawn's native module) cannot load.
 */
async function probeWebGpu(): Promise<WebGpuInfo> {
  try {
    const { requestAdapter } = await import("@bitnet-ts/kernels-webgpu");
    const { report } = await requestAdapter();
    return { available: true, adapter: report };
  } catch (error) {
    return { available: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

function webGpuLines(w: WebGpuInfo): string[] {
  const a = w.adapter;
  if (!w.available || a === undefined) {
    const [first, ...rest] = (w.reason ?? "unknown").split("\n");
    return [`  adapter      none: ${first}`, ...rest.map((line) => `               ${line}`)];
  }
  const ids = [a.vendor, a.architecture, a.device].filter((s) => s !== "").join(", ");
  const limits = KEY_LIMITS.filter((l) => a.limits[l.name] !== undefined).map((l) => {
    const value = a.limits[l.name]!;
    return `  ${l.name} ${value}${l.bytes ? ` (${formatBytes(value)})` : ""}`;
  });
  return [
    `  adapter      ${a.description || a.device || a.vendor || "unnamed"}${ids === "" ? "" : ` [${ids}]`}`,
    `  backend      ${a.backendType}`,
    `  features     ${a.features.join(" ") || "none"}`,
    "  limits",
    ...limits.map((line) => `  ${line}`),
  ];
}

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
  const webgpu = await probeWebGpu();
  const available = new Set(backends.filter((b) => b.available).map((b) => b.name));
  // "auto" takes the first backend of its order that can run here.
  const auto = autoOrder(d).find((name) => available.has(name)) ?? "reference";
  if (options.json) {
    return `${JSON.stringify({ ...d, cpu_simd: cpuSimdLevel(d.cpu), webgpu, backends, auto_backend: auto }, null, 2)}\n`;
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
    "webgpu",
    ...webGpuLines(webgpu),
    "",
    "backends",
    ...backends.map((b) => `  ${backendLine(b)}`),
    "",
    `auto         ${auto}${auto === "reference" ? " (the slow TypeScript reference: no native backend can run here)" : ""}`,
  ];
  return `${lines.join("\n")}\n`;
}
