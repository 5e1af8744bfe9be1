import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { f16ToF32 } from "./float";
import { dequantizeI2S, i2sByteSize, packI2S, quantizeI2S, unpackI2S } from "./i2s";
import { dequantizeQ4_0, quantizeQ4_0 } from "./q4_0";
import { dequantizeQ6_K, dotQ6_KQ8_K, quantizeQ6_K } from "./q6_k";
import { dequantizeQ8_0, quantizeQ8_0 } from "./q8_0";
import { dequantizeQ8_K, encodeQ8_K, quantizeQ8_K } from "./q8_k";
import { absmeanTernary, quantizeActivationsI8 } from "./ternary";
import { dequantizeTQ1_0, packTQ1_0, quantizeTQ1_0, unpackTQ1_0 } from "./tq1_0";
import { dequantizeTQ2_0, packTQ2_0, packTQ2Codes, quantizeTQ2_0, unpackTQ2_0 } from "./tq2_0";

const ternary = (n: number) =>
  fc.array(fc.constantFrom(-1, 0, 1), { minLength: n, maxLength: n }).map((v) => Int8Array.from(v));

describe("I2_S", () => {
  it("decodes the spec's worked example 2 (128 elements, scale 0.5)", () => {
    const bytes = new Uint8Array(i2sByteSize(128));
    bytes.fill(0x55, 0, 32); // all codes 1 → 0
    bytes[0] = 0b10_00_01_10;
    new DataView(bytes.buffer).setFloat32(32, 0.5, true);
    const values = dequantizeI2S(bytes, 128);
    expect([values[0], values[32], values[64], values[96]]).toEqual([0.5, -0.5, 0, 0.5]);
    expect(values.filter((v) => v !== 0)).toHaveLength(3);
  });

  it("puts element (row 3, col 300) of a 2560-wide tensor in byte 1996, bits 5-4 (worked example 1)", () => {
    const n = 2560 * 4;
    const values = new Int8Array(n);
    values[3 * 2560 + 300] = 1;
    const bytes = packI2S(values, 1);
    expect((bytes[1996]! >> 4) & 3).toBe(2);
    for (let i = 0; i < n / 4; i++) {
      if (i !== 1996) {
        expect(bytes[i]).toBe(0x55);
      }
    }
  });

  it("stores the f32 scale after the codes and zero padding after it", () => {
    const bytes = packI2S(new Int8Array(256), 2.1631613);
    expect(bytes).toHaveLength(64 + 32);
    expect(new DataView(bytes.buffer).getFloat32(64, true)).toBe(Math.fround(2.1631613));
    expect(Array.from(bytes.subarray(68))).toEqual(new Array(28).fill(0));
    expect(i2sByteSize(2560 * 2560)).toBe(1_638_432);
  });

  it("round-trips ternary values and quantizes ternarized weights like bitnet.cpp", () => {
    fc.assert(
      fc.property(
        ternary(384),
        fc.float({ min: Math.fround(0.001), max: 10, noNaN: true }),
        (values, s) => {
          const scale = Math.fround(s);
          const bytes = packI2S(values, scale);
          expect(unpackI2S(bytes, 384)).toEqual({ values, scale });
          const floats = dequantizeI2S(bytes, 384);
          if (values.some((v) => v !== 0)) {
            expect(quantizeI2S(floats)).toEqual(bytes);
          }
        },
      ),
    );
  });

  it("rejects values outside -1..1 and sizes that are not whole blocks", () => {
    expect(() => packI2S(Int8Array.of(...new Array(127).fill(0), 2), 1)).toThrowError(
      /-1, 0 or \+1/,
    );
    expect(() => packI2S(new Int8Array(100), 1)).toThrowError(
      expect.objectContaining({ code: "QUANT_INVALID_INPUT" }),
    );
  });
});

describe("TQ2_0", () => {
  it("puts element 200 in bits 4-5 of qs[40] and d last", () => {
    const values = new Int8Array(256);
    values[200] = 1;
    const bytes = packTQ2_0(values, 0.5);
    expect(bytes).toHaveLength(66);
    expect(bytes[40]).toBe(0b01_10_01_01);
    expect(bytes.filter((b, i) => i < 64 && i !== 40 && b !== 0x55)).toHaveLength(0);
    expect(f16ToF32(bytes[64]! | (bytes[65]! << 8))).toBe(0.5);
    const floats = dequantizeTQ2_0(bytes, 256);
    expect(floats[200]).toBe(0.5);
    expect(floats.filter((v) => v !== 0)).toHaveLength(1);
  });

  it("round-trips ternary values and re-quantizes their dequantization exactly", () => {
    fc.assert(
      fc.property(ternary(512), (values) => {
        const bytes = packTQ2_0(values, Float32Array.of(0.25, 3));
        expect(unpackTQ2_0(bytes, 512).values).toEqual(values);
        const floats = dequantizeTQ2_0(bytes, 512);
        const blocksNonZero = [0, 1].every((b) =>
          values.subarray(256 * b, 256 * b + 256).some((v) => v !== 0),
        );
        if (blocksNonZero) {
          expect(quantizeTQ2_0(floats)).toEqual(bytes);
        }
      }),
    );
  });

  it("packs the codes alone exactly as the blocks hold them, without the scales", () => {
    fc.assert(
      fc.property(ternary(512), (values) => {
        const blocks = packTQ2_0(values, 1);
        const codes = packTQ2Codes(values);
        expect(codes).toHaveLength(128);
        expect(codes.subarray(0, 64)).toEqual(blocks.subarray(0, 64));
        expect(codes.subarray(64, 128)).toEqual(blocks.subarray(66, 130));
      }),
    );
    expect(() => packTQ2Codes(new Int8Array(100))).toThrow(/256/);
  });
});

describe("TQ1_0", () => {
  it("encodes all-zero trits as 0x80 (5 trits) and 127 (4 trits), and element 200 in qs[40] trit 2", () => {
    const zeros = packTQ1_0(new Int8Array(256), 1);
    expect(zeros).toHaveLength(54);
    expect(Array.from(zeros.subarray(0, 48))).toEqual(new Array(48).fill(128));
    expect(Array.from(zeros.subarray(48, 52))).toEqual([127, 127, 127, 127]);
    const values = new Int8Array(256);
    values[200] = 1;
    const bytes = packTQ1_0(values, 1);
    expect(bytes[40]).toBe(137); // digits 1,1,2,1,1 → q = 130 → ceil(130·256/243) = 137
    expect(dequantizeTQ1_0(bytes, 256)[200]).toBe(1);
  });

  it("round-trips ternary values and re-quantizes their dequantization exactly", () => {
    fc.assert(
      fc.property(ternary(256), (values) => {
        const bytes = packTQ1_0(values, 0.75);
        const unpacked = unpackTQ1_0(bytes, 256);
        expect(unpacked.values).toEqual(values);
        expect(unpacked.scales[0]).toBe(0.75);
        if (values.some((v) => v !== 0)) {
          expect(quantizeTQ1_0(dequantizeTQ1_0(bytes, 256))).toEqual(bytes);
        }
      }),
    );
  });

  it("agrees with TQ2_0 on the same ternary weights", () => {
    fc.assert(
      fc.property(ternary(256), (values) => {
        expect(dequantizeTQ1_0(packTQ1_0(values, 1.5), 256)).toEqual(
          dequantizeTQ2_0(packTQ2_0(values, 1.5), 256),
        );
      }),
    );
  });
});

describe("Q8_0", () => {
  it("quantizes a hand-computed block (d = 1, roundf ties away from zero)", () => {
    const x = new Float32Array(32);
    x.set([127, -127, 1, 0.5, -0.5, 2.5]);
    const bytes = quantizeQ8_0(x);
    expect([bytes[0], bytes[1]]).toEqual([0x00, 0x3c]);
    expect(Array.from(new Int8Array(bytes.buffer, 2, 6))).toEqual([127, -127, 1, 1, -1, 3]);
    expect(Array.from(dequantizeQ8_0(bytes, 32).subarray(0, 6))).toEqual([127, -127, 1, 1, -1, 3]);
  });

  it("keeps every element within half a step of the input", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -100, max: 100, noNaN: true }), { minLength: 64, maxLength: 64 }),
        (v) => {
          const x = Float32Array.from(v);
          const y = dequantizeQ8_0(quantizeQ8_0(x), 64);
          for (let b = 0; b < 2; b++) {
            const amax = Math.max(...x.subarray(32 * b, 32 * b + 32).map(Math.abs));
            for (let j = 32 * b; j < 32 * b + 32; j++) {
              // Half a step, plus the f16 rounding of the scale (relative error ≤ 2^-11) times |x|,
              // plus 127 f16 subnormal steps for scales too small for f16.
              expect(Math.abs(y[j]! - x[j]!)).toBeLessThanOrEqual(
                (amax / 127) * 0.5 + amax * 2 ** -11 + 127 * 2 ** -24,
              );
            }
          }
        },
      ),
    );
  });
});

describe("Q6_K", () => {
  it("keeps a smooth ramp within its 6-bit step and the 8-bit sub-scale, and zeros as zeros", () => {
    const x = new Float32Array(256);
    for (let i = 0; i < 256; i++) {
      x[i] = ((i % 64) - 32) * 0.25;
    }
    const y = dequantizeQ6_K(quantizeQ6_K(x), 256);
    for (let i = 0; i < 256; i++) {
      // |x| ≤ 8: half a step of 8/32, plus the sub-scale quantized to 1/128 of the largest.
      expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(0.125 + 8 / 128);
    }
    expect(
      [...dequantizeQ6_K(quantizeQ6_K(new Float32Array(256)), 256)].every((v) => v === 0),
    ).toBe(true);
  });

  it("stays within ~1% of each sub-block's range on random data, deterministically", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -4, max: 4, noNaN: true, noDefaultInfinity: true }), {
          minLength: 512,
          maxLength: 512,
        }),
        (v) => {
          const x = Float32Array.from(v);
          const q = quantizeQ6_K(x);
          expect(quantizeQ6_K(x)).toEqual(q);
          const y = dequantizeQ6_K(q, 512);
          for (let s = 0; s < 32; s++) {
            const amax = Math.max(...x.subarray(16 * s, 16 * s + 16).map(Math.abs));
            for (let j = 16 * s; j < 16 * s + 16; j++) {
              // 6-bit steps of the sub-block scale, the 8-bit quantized scale (≤ 1/128 of the block
              // maximum) and f16 rounding; a generous bound that still catches packing errors.
              expect(Math.abs(y[j]! - x[j]!)).toBeLessThanOrEqual(amax / 31 + 4 / 128 + 1e-6);
            }
          }
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe("Q6_K · Q8_K (the quantized head's dot)", () => {
  it("equals the dot of the dequantized values up to f32 rounding", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -4, max: 4, noNaN: true, noDefaultInfinity: true }), {
          minLength: 1024,
          maxLength: 1024,
        }),
        (v) => {
          const w = Float32Array.from(v.slice(0, 512));
          const a = Float32Array.from(v.slice(512));
          const row = quantizeQ6_K(w);
          const x = quantizeQ8_K(a);
          const wd = dequantizeQ6_K(row, 512);
          const xd = dequantizeQ8_K(encodeQ8_K(x), 512);
          let exact = 0;
          let scale = 0;
          for (let i = 0; i < 512; i++) {
            exact += wd[i]! * xd[i]!;
            scale += Math.abs(wd[i]! * xd[i]!);
          }
          expect(Math.abs(dotQ6_KQ8_K(row, x) - exact)).toBeLessThanOrEqual(1e-5 * scale + 1e-30);
        },
      ),
      { numRuns: 30 },
    );
  });

  it("rejects a row of the wrong size", () => {
    expect(() => dotQ6_KQ8_K(new Uint8Array(209), quantizeQ8_K(new Float32Array(256)))).toThrow(
      /Q6_K/,
    );
  });
});

describe("Q4_0", () => {
  it("decodes the spec example qs[3] = 0xA2 → element 3 = -6d, element 19 = 2d", () => {
    const bytes = new Uint8Array(18).fill(0x88);
    bytes[0] = 0x00;
    bytes[1] = 0x40; // d = 2
    bytes[2 + 3] = 0xa2;
    const y = dequantizeQ4_0(bytes, 32);
    expect([y[3], y[19], y[0]]).toEqual([-12, 4, 0]);
  });

  it("quantizes a hand-computed block (max -8 → d = 1)", () => {
    const x = new Float32Array(32);
    x.set([-8, 7, 0.5, 0.4, -0.6]);
    const bytes = quantizeQ4_0(x);
    expect(f16ToF32(bytes[0]! | (bytes[1]! << 8))).toBe(1);
    // q = min(15, trunc(x·(1/d) + 8.5)) with d = max/-8 = 1... then element = (q-8)·d
    expect(Array.from(dequantizeQ4_0(bytes, 32).subarray(0, 5))).toEqual([-8, 7, 1, 0, -1]);
  });
});

describe("Q6_K", () => {
  it("decodes a hand-built super-block", () => {
    const bytes = new Uint8Array(210);
    bytes.fill(1, 192, 208); // all 16 scales = 1
    bytes[196] = 3; // scale 4 (elements 64..79)
    bytes[208] = 0x00;
    bytes[209] = 0x3c; // d = 1
    bytes[0] = 0x21; // ql[0]: low nibble 1 (element 0), high nibble 2 (element 64)
    bytes[128] = 0b11_10_01_00; // qh[0]: element 0 → 0, 32 → 1, 64 → 2, 96 → 3 (high bits)
    const y = dequantizeQ6_K(bytes, 256);
    expect(y[0]).toBe(1 - 32);
    expect(y[32]).toBe(16 - 32);
    expect(y[64]).toBe((2 + 32 - 32) * 3);
    expect(y[96]).toBe(48 - 32);
    expect(y[1]).toBe(-32);
    expect(y[200]).toBe(-32);
  });
});

describe("Q8_K", () => {
  it("quantizes as quantize_row_q8_K_ref (signed max, -127 scale, ties to even, bsums)", () => {
    const x = new Float32Array(256);
    x[0] = 1;
    x[5] = 2;
    x[17] = -0.5;
    const q = quantizeQ8_K(x);
    expect(q.d[0]).toBe(Math.fround(1 / Math.fround(-127 / 2)));
    expect([q.qs[0], q.qs[5], q.qs[17]]).toEqual([-64, -127, 32]); // -63.5 → -64 (even); 31.75 → 32
    expect(q.bsums[0]).toBe(-191);
    expect(q.bsums[1]).toBe(32);
    const y = dequantizeQ8_K(encodeQ8_K(q), 256);
    expect(y[5]).toBeCloseTo(2, 6);
    expect(quantizeQ8_K(new Float32Array(256)).d[0]).toBe(0);
  });
});

describe("BitLinear quantizers", () => {
  it("absmean-ternarizes weights with scale mean|W|", () => {
    const { values, scale } = absmeanTernary(Float32Array.of(0.5, -0.5, 0.1, 0, 2, -2));
    expect(scale).toBe(Math.fround(5.1 / 6));
    expect(Array.from(values)).toEqual([1, -1, 0, 0, 1, -1]);
    expect(absmeanTernary(new Float32Array(4)).scale).toBe(Math.fround(1e-5));
  });

  it("quantizes activations per token with absmax int8 (bitnet.cpp quantize_row_i8_s)", () => {
    const out = new Int8Array(4);
    const { scale, sum } = quantizeActivationsI8(Float32Array.of(1, -0.5, 0.25, 0), out);
    expect(scale).toBe(127);
    expect(Array.from(out)).toEqual([127, -64, 32, 0]);
    expect(sum).toBe(95);
    const zeros = new Int8Array(3);
    expect(quantizeActivationsI8(new Float32Array(3), zeros).scale).toBe(Math.fround(127 / 1e-5));
  });
});
