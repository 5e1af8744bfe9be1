import { describe, expect, it } from "vitest";
import { findGgmlType, findGgmlTypeByName, GGML_TYPES, tensorByteSize } from "./ggml-types";

describe("ggml type table", () => {
  it("has the block sizes and bytes per block of ggml-common.h", () => {
    const table = Object.fromEntries(
      GGML_TYPES.map((t) => [t.name, [t.id, t.blockSize, t.typeSize]]),
    );
    expect(table).toMatchObject({
      F32: [0, 1, 4],
      F16: [1, 1, 2],
      Q4_0: [2, 32, 18],
      Q8_0: [8, 32, 34],
      Q6_K: [14, 256, 210],
      Q8_K: [15, 256, 292],
      BF16: [30, 1, 2],
      TQ1_0: [34, 256, 54],
      TQ2_0: [35, 256, 66],
      I2_S: [36, 128, 32],
    });
  });

  it("sizes I2_S tensors as N/4 + 32 bytes (the released 2B-4T shapes)", () => {
    const i2s = findGgmlTypeByName("i2_s")!;
    expect(tensorByteSize(i2s, [2560, 2560])).toBe(1_638_432);
    expect(tensorByteSize(i2s, [2560, 640])).toBe(409_632);
    expect(tensorByteSize(i2s, [2560, 6912])).toBe(4_423_712);
    expect(tensorByteSize(i2s, [6912, 2560])).toBe(4_423_712);
    expect(tensorByteSize(i2s, [2560])).toBe(672);
  });

  it("sizes block types by blocks", () => {
    expect(tensorByteSize(findGgmlType(35)!, [2560, 6912])).toBe((2560 / 256) * 66 * 6912);
    expect(tensorByteSize(findGgmlType(1)!, [2560, 128256])).toBe(656_670_720);
  });

  it("does not know the ids bitnet.cpp and mainline disagree on", () => {
    for (const id of [4, 5, 31, 32, 33, 37, 38, 39, 40, 1000]) {
      expect(findGgmlType(id)).toBeUndefined();
    }
  });
});
