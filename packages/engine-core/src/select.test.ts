import { type DeviceReport, probeDevice } from "@bitnet-ts/device-probe";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fixture } from "../test/models";
import type { Backend, BackendModule } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";
import { loadModel } from "./load";
import { REFERENCE_KERNEL_RULES, ReferenceBackend } from "./reference/backend";
import {
  autoOrder,
  kernelRulesFor,
  probeBackends,
  registerBackend,
  registeredBackends,
  resetBackendRegistry,
  selectBackend,
} from "./select";

afterAll(cleanup);
afterEach(resetBackendRegistry);

/** A backend module whose backend is the reference one, with its compile replaced. */
function fakeModule(name: string, compile?: Backend["compile"]): () => Promise<BackendModule> {
  return async () => ({
    kernelRules: { ...REFERENCE_KERNEL_RULES, backends: [name] },
    createBackend: () => {
      const inner = new ReferenceBackend();
      return {
        name,
        needsTensorData: true,
        batchInvariance: "bit-exact",
        describe: () => ({ device: `${name} device`, details: {} }),
        compile: compile ?? ((model, options) => inner.compile(model, options)),
      } satisfies Backend;
    },
  });
}

const device = (patch: Partial<DeviceReport>): DeviceReport => ({ ...probeDevice(), ...patch });

describe("backend selection", () => {
  it("resolves the named reference backends without any native package", async () => {
    expect((await selectBackend("reference")).name).toBe("reference");
    expect((await selectBackend("reference-f64")).name).toBe("reference-f64");
  });

  it("rejects an unknown backend name, listing the registered ones", async () => {
    await expect(selectBackend("tpu")).rejects.toMatchObject({
      code: "ENGINE_BACKEND_UNAVAILABLE",
      message: expect.stringContaining("auto, cuda, webgpu, cpu, reference, reference-f64"),
    });
  });

  it("names a native backend that fails to load, when asked for it explicitly", async () => {
    registerBackend("cuda", () =>
      Promise.reject(new Error("libcudart.so.12: cannot open shared object file")),
    );
    await expect(selectBackend("cuda")).rejects.toMatchObject({
      code: "ENGINE_BACKEND_UNAVAILABLE",
      message: expect.stringContaining("libcudart.so.12"),
    });
  });

  it("is an open registry: any name, ordered by priority, selectable by alias", async () => {
    registerBackend({ name: "npu", load: fakeModule("npu"), priority: 1000, aliases: ["npu0"] });
    expect(registeredBackends().map((r) => r.name)).toEqual(["npu", "cuda", "webgpu", "cpu"]);
    expect((await selectBackend("npu0")).name).toBe("npu");
    expect(() =>
      registerBackend({ name: "reference", load: fakeModule("reference"), priority: 1 }),
    ).toThrow(/built in/);
  });

  it("orders auto by priority and leaves out backends whose precheck fails here", () => {
    const noGpu = device({
      platform: "linux",
      cuda: { gpuPresent: false, reason: "no NVIDIA driver", devices: [] },
    });
    expect(autoOrder(noGpu)).toEqual(["cpu", "reference"]);
    const gpu = device({
      platform: "linux",
      cuda: { gpuPresent: true, devices: [] },
    });
    expect(autoOrder(gpu)).toEqual(["cuda", "cpu", "reference"]);
    expect(autoOrder(device({ platform: "darwin" }))).toContain("webgpu");
  });

  it("auto falls back to the reference backend with one line per skipped backend, and the model still runs", async () => {
    // Two backends that pass their (absent) precheck and then fail to load: both are logged.
    registerBackend({
      name: "first",
      load: () => Promise.reject(new Error("addon build missing")),
      priority: 2000,
    });
    registerBackend({
      name: "second",
      load: () => Promise.reject(new Error("no driver")),
      priority: 1999,
    });
    registerBackend("cpu", () => Promise.reject(new Error("cpu addon missing")));
    const log: string[] = [];
    const model = await loadModel(await fixture("tiny-i2s"), {
      backend: "auto",
      contextLength: 16,
      onLog: (l) => log.push(l),
    });
    expect(model.backendName).toBe("reference");
    expect(log).toEqual([
      expect.stringMatching(/"first" failed to load \(addon build missing\); trying "second"/),
      expect.stringMatching(/"second" failed to load \(no driver\)/),
      expect.stringMatching(
        /"cpu" failed to load \(cpu addon missing\); using "reference", the slow TypeScript reference backend/,
      ),
    ]);
    const seq = model.createSequence();
    const { runs } = await model.step([{ sequence: seq, tokens: [128000, 791] }]);
    expect(runs[0]!.logits.length).toBe(model.description.hparams.vocabSize);
    await model.dispose();
  });

  it("without onLog, ending on the reference backend is a process warning, not silence", async () => {
    registerBackend("cpu", () => Promise.reject(new Error("cpu addon missing")));
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      const backend = await selectBackend("auto");
      expect(backend.name).toBe("reference");
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(/"cpu" failed to load \(cpu addon missing\); using "reference"/),
        "BitnetBackendFallback",
      );
      // With a listener the line goes there instead.
      const log: string[] = [];
      await selectBackend("auto", { onLog: (l) => log.push(l) });
      expect(log).toHaveLength(1);
      expect(warn).toHaveBeenCalledTimes(1);
    } finally {
      warn.mockRestore();
    }
  });

  it("auto falls back when the chosen backend cannot compile this model, but surfaces real failures", async () => {
    registerBackend({
      name: "picky",
      priority: 5000,
      load: fakeModule("picky", () =>
        Promise.reject(
          new EngineError(
            EngineErrorCode.BACKEND_UNAVAILABLE,
            "output head type q4_k is not supported",
          ),
        ),
      ),
    });
    const log: string[] = [];
    const model = await loadModel(await fixture("tiny-i2s"), {
      backend: "auto",
      contextLength: 16,
      onLog: (l) => log.push(l),
    });
    expect(model.backendName).toBe("reference");
    expect(log.join("\n")).toContain('backend "picky" cannot run this model');
    expect(log.join("\n")).toContain("q4_k is not supported");
    await model.dispose();
    // Anything else from compile is a bug and must not be hidden behind a fallback.
    registerBackend({
      name: "picky",
      priority: 5000,
      load: fakeModule("picky", () => Promise.reject(new Error("kernel bug"))),
    });
    await expect(
      loadModel(await fixture("tiny-i2s"), { backend: "auto", contextLength: 16 }),
    ).rejects.toThrow("kernel bug");
  });

  it("hands each backend its own options", async () => {
    const seen: unknown[] = [];
    registerBackend({
      name: "opt",
      priority: 1,
      load: async () => ({
        ...(await fakeModule("opt")()),
        createBackend: (options) => {
          seen.push(options);
          return new ReferenceBackend();
        },
      }),
    });
    await selectBackend("opt", { backendOptions: { opt: { lanes: 3 }, cpu: { threads: 9 } } });
    expect(seen).toEqual([{ lanes: 3 }]);
  });

  it("finds a backend's kernel rules without creating it, and reports availability by loading", async () => {
    expect(await kernelRulesFor("reference")).toBe(REFERENCE_KERNEL_RULES);
    registerBackend({ name: "npu", load: fakeModule("npu"), priority: 1000 });
    expect((await kernelRulesFor("npu")).backends).toEqual(["npu"]);
    registerBackend("cuda", () => Promise.reject(new Error("no libcuda")));
    const statuses = await probeBackends();
    expect(statuses.find((s) => s.name === "npu")).toMatchObject({
      available: true,
      description: { device: "npu device" },
    });
    // A GPU the driver lists does not make the backend available: loading it decides.
    expect(statuses.find((s) => s.name === "cuda")).toMatchObject({
      available: false,
      reason: expect.stringContaining("no libcuda"),
    });
    expect(statuses.at(-1)).toMatchObject({ name: "reference", available: true });
  });
});
