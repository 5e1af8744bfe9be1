import { autoBackendOrder, probeDevice } from "@bitnet-ts/device-probe";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, fixture } from "../test/models";
import { EngineError, EngineErrorCode } from "./errors";
import { loadModel } from "./load";
import { registerBackend, selectBackend } from "./select";

afterAll(cleanup);

describe("backend selection", () => {
  it("resolves the named reference backends without any native package", async () => {
    expect((await selectBackend("reference")).name).toBe("reference");
    expect((await selectBackend("reference-f64")).name).toBe("reference-f64");
  });

  it("rejects an unknown backend name with the valid ones", async () => {
    await expect(selectBackend("tpu" as never)).rejects.toMatchObject({
      code: "ENGINE_BACKEND_UNAVAILABLE",
      message: expect.stringContaining("auto, cuda, metal, cpu, reference"),
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

  it("auto falls back to the reference backend with one line per skipped backend, and the model still runs", async () => {
    registerBackend("cpu", () => Promise.reject(new Error("addon build missing")));
    registerBackend("cuda", () => Promise.reject(new Error("no driver")));
    registerBackend("metal", () => Promise.reject(new Error("not macOS")));
    const log: string[] = [];
    const model = await loadModel(await fixture("tiny-i2s"), {
      backend: "auto",
      contextLength: 16,
      onLog: (l) => log.push(l),
    });
    expect(model.backendName).toBe("reference");
    const natives = autoBackendOrder(probeDevice()).filter((b) => b !== "reference");
    expect(log).toHaveLength(natives.length);
    if (natives.includes("cpu")) {
      expect(log.find((l) => l.includes('"cpu"'))).toMatch(
        /addon build missing.*using "reference"/,
      );
    }
    const seq = model.createSequence();
    const { runs } = await model.step([{ sequence: seq, tokens: [128000, 791] }]);
    expect(runs[0]!.logits.length).toBe(model.description.hparams.vocabSize);
    await model.dispose();
  });

  it("auto falls back when the native backend cannot compile this model, but surfaces real failures", async () => {
    if (autoBackendOrder(probeDevice())[0] !== "cpu") {
      return; // the first choice here is not the CPU backend
    }
    const failing = (error: Error) => async () => ({
      createBackend: () => ({
        name: "cpu",
        needsTensorData: false,
        compile: () => Promise.reject(error),
      }),
    });
    registerBackend(
      "cpu",
      failing(
        new EngineError(
          EngineErrorCode.BACKEND_UNAVAILABLE,
          "output head type q4_k is not supported",
        ),
      ),
    );
    const log: string[] = [];
    const model = await loadModel(await fixture("tiny-i2s"), {
      backend: "auto",
      contextLength: 16,
      onLog: (l) => log.push(l),
    });
    expect(model.backendName).toBe("reference");
    expect(log.join("\n")).toContain("q4_k is not supported");
    await model.dispose();
    // Anything else from compile is a bug and must not be hidden behind a fallback.
    registerBackend("cpu", failing(new Error("kernel bug")));
    await expect(
      loadModel(await fixture("tiny-i2s"), { backend: "auto", contextLength: 16 }),
    ).rejects.toThrow("kernel bug");
  });
});
