import { describe, expect, it } from "vitest";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  nearestInt,
  roundHalfAwayFromZero,
  roundHalfToEven,
} from "./float";

describe("F16", () => {
  it("encodes known values with round-to-nearest-even", () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(0.1)).toBe(0x2e66);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds up to infinity
    expect(f32ToF16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16(2 ** -26)).toBe(0x0000); // underflows to zero
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16(Number.POSITIVE_INFINITY)).toBe(0x7c00);
    expect(f32ToF16(Number.NaN)).toBe(0x7e00);
  });

  it("round-trips every finite half exactly", () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16ToF32(h);
      if (!Number.isNaN(v)) {
        expect(f32ToF16(v)).toBe(h);
      }
    }
  });

  it("decodes known values", () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0x3555)).toBe(0.333251953125);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(f16ToF32(0x7e00)).toBeNaN();
  });
});

describe("BF16", () => {
  it("keeps the top 16 bits with round-to-nearest-even and quiet NaNs", () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16(-3.140625)).toBe(0xc049);
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc049)).toBe(-3.140625);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(Number.NaN)))).toBe(true);
  });
});

describe("integer rounding", () => {
  it("nearestInt rounds ties to even like ggml's nearest_int", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -63.5, 126.49, -126.51].map(nearestInt)).toEqual([
      0, 2, 2, 0, -2, -64, 126, -127,
    ]);
  });
  it("roundHalfAwayFromZero is C roundf", () => {
    expect([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997].map(roundHalfAwayFromZero)).toEqual([
      1, 2, 3, -1, -3, 0,
    ]);
  });
  it("roundHalfToEven is torch.round", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.6].map(roundHalfToEven)).toEqual([
      0, 2, 2, -0, -2, -2, 3,
    ]);
  });
});
