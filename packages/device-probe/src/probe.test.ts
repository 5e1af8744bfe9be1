import { describe, expect, it } from "vitest";
import {
  cpuSimdLevel,
  featuresFromFlags,
  parseNvccVersion,
  parseNvidiaSmi,
  parseProcCpuinfo,
  probeDevice,
} from "./index";

const X86 = `processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_1 sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx_vnni
physical id\t: 0
core id\t\t: 0

processor\t: 1
physical id\t: 0
core id\t\t: 0

processor\t: 2
physical id\t: 0
core id\t\t: 1
`;

const ARM = `processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp i8mm
CPU implementer\t: 0x41
`;

describe("CPU probing", () => {
  it("parses x86 /proc/cpuinfo: model, features, physical cores (not hyperthreads)", () => {
    const cpu = parseProcCpuinfo(X86, "x64");
    expect(cpu.model).toBe("Intel(R) Xeon(R) Platinum 8480+");
    expect(cpu.vendor).toBe("GenuineIntel");
    expect(cpu.physicalCores).toBe(2);
    expect(cpu.features).toMatchObject({
      sse42: true,
      avx2: true,
      fma: true,
      f16c: true,
      avx512f: true,
      avx512bw: true,
      avx512vl: true,
      avx512vnni: true,
      avx512bf16: true,
      avxvnni: true,
      neon: false,
      dotprod: false,
    });
    expect(
      cpuSimdLevel({
        arch: "x64",
        vendor: "",
        model: "",
        physicalCores: 1,
        logicalCores: 1,
        caches: [],
        features: cpu.features,
      }),
    ).toBe("avx512vnni");
  });

  it("parses ARM features (asimd = NEON, asimddp = dotprod, i8mm)", () => {
    const cpu = parseProcCpuinfo(ARM, "arm64");
    expect(cpu.features).toMatchObject({ neon: true, dotprod: true, i8mm: true, avx2: false });
    expect(
      cpuSimdLevel({
        arch: "arm64",
        vendor: "",
        model: "",
        physicalCores: 1,
        logicalCores: 1,
        caches: [],
        features: featuresFromFlags(["asimd"], "arm64"),
      }),
    ).toBe("neon");
  });

  it("probes this machine without throwing", () => {
    const r = probeDevice();
    expect(r.cpu.logicalCores).toBeGreaterThan(0);
    expect(r.cpu.physicalCores).toBeGreaterThan(0);
    expect(r.cpu.physicalCores).toBeLessThanOrEqual(r.cpu.logicalCores);
    expect(r.memory.totalBytes).toBeGreaterThan(0);
    expect(r.memory.availableBytes).toBeGreaterThan(0);
    for (const gpu of [r.cuda, r.metal]) {
      expect(typeof gpu.gpuPresent).toBe("boolean");
      if (!gpu.gpuPresent) {
        expect(gpu.reason).toMatch(/\w/);
      }
    }
    if (process.platform === "linux") {
      expect(r.metal.gpuPresent).toBe(false);
    }
  });
});

describe("GPU probing", () => {
  it("parses nvidia-smi and nvcc output", () => {
    const csv =
      "0, NVIDIA H100 80GB HBM3, 9.0, 81559, 560.35.03\n1, NVIDIA H100 80GB HBM3, 9.0, 81559, 560.35.03\n";
    const { devices, driverVersion } = parseNvidiaSmi(csv);
    expect(devices).toHaveLength(2);
    expect(devices[1]).toEqual({
      index: 1,
      name: "NVIDIA H100 80GB HBM3",
      computeCapability: "9.0",
      memoryBytes: 81559 * 1024 * 1024,
    });
    expect(driverVersion).toBe("560.35.03");
    expect(parseNvccVersion("Cuda compilation tools, release 13.0, V13.0.88")).toBe("13.0");
  });
});
