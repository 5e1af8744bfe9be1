import { afterEach, describe, expect, it, vi } from "vitest";
import * as browser from "./browser";

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("the browser entry", () => {
  it("has the Node entry's exports", async () => {
    const node = await import("./index");
    expect(Object.keys(browser).sort()).toEqual(Object.keys(node).sort());
  });

  it("reports what navigator offers, and the rest as unknown with reasons", () => {
    vi.stubGlobal("navigator", { hardwareConcurrency: 6, deviceMemory: 8 });
    const device = browser.probeDevice({ refresh: true });
    expect(device.platform).toBe("browser");
    expect(device.cpu.logicalCores).toBe(6);
    expect(browser.cpuSimdLevel(device.cpu)).toBe("scalar");
    expect(device.memory).toEqual({ totalBytes: 8 * 2 ** 30, availableBytes: 4 * 2 ** 30 });
    expect(device.cuda).toMatchObject({ gpuPresent: false, reason: expect.any(String) });
    expect(device.metal).toMatchObject({ gpuPresent: false, reason: expect.any(String) });
    expect(browser.summarizeDevice(device)).toMatchObject({ logical_cores: 6 });
  });

  it("reads the JS heap's headroom where the browser offers it", () => {
    vi.stubGlobal("navigator", {});
    vi.stubGlobal("performance", { memory: { jsHeapSizeLimit: 4e9, usedJSHeapSize: 1e9 } });
    expect(browser.probeMemory()).toEqual({ totalBytes: 0, availableBytes: 3e9 });
    expect(browser.probeCpu().logicalCores).toBe(1);
  });
});
