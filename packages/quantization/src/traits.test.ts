import { findGgmlTypeByName } from "@bitnet-ts/gguf";
import { describe, expect, it } from "vitest";
import { QUANT_TRAITS, quantByteSize } from "./traits";

describe("QUANT_TRAITS", () => {
  it("agrees with the gguf package's ggml type table on every size", () => {
    for (const traits of Object.values(QUANT_TRAITS)) {
      const ggml = findGgmlTypeByName(traits.name)!;
      expect([traits.blockSize, traits.typeSize, traits.tensorTailBytes]).toEqual([
        ggml.blockSize,
        ggml.typeSize,
        ggml.tensorTailBytes,
      ]);
    }
  });

  it("round-trips values each format can represent exactly through fromFloat/toFloat", () => {
    const ternary = new Float32Array(512).map((_, i) => ((i * 7) % 3) - 1);
    for (const name of ["TQ1_0", "TQ2_0", "I2_S", "F16", "BF16", "F32"] as const) {
      const t = QUANT_TRAITS[name];
      const bytes = t.fromFloat!(ternary);
      expect(bytes.length).toBe(quantByteSize(name, 512));
      expect(t.toFloat(bytes, 512)).toEqual(ternary);
    }
  });
});
