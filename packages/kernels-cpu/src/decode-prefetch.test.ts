// The one-token loops' software prefetch distances (BITNET_DECODE_PREFETCH_BYTES, or the CPU's
// defaults: 2 KiB on Intel, 6 KiB elsewhere; BITNET_DECODE_PREFETCH_L2_BYTES, the I2_S rows'
// second request into L2: 16 KiB on Intel (4 KiB on the avx2 path), none elsewhere;
// BITNET_DECODE_PREFETCH_HEAD_BYTES, the F16 head's rows: 3 KiB on Intel, 4 KiB elsewhere)
// change speed only: every distance gives the same bits. So do
// BITNET_DECODE_VECTOR_BITS, the width of the avx512vnni path's one-token I2_S loop (256 on
// Intel, 512 elsewhere), and BITNET_DECODE_PREFETCH_NTA, whether those requests are
// non-temporal (off on Intel, on elsewhere). BITNET_HEAD_VECTOR_BITS, the width of the
// avx512vnni path's F16 head (256, the avx2 path's head, on Intel; 512 elsewhere), does change
// the logits' rounding, but never between steps of one process. The addon reads the variables
// once per process, so other settings run in child processes and their outputs are compared with
// this one's.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { f16ToF32, packI2S, packTQ2_0, roundToF16 } from "@bitnet-ts/quantization";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, cpuModel, SLOW_TEST_MS } from "../test/models";
import { rng } from "../test/numbers";
import { ALL_KERNEL_PATHS, pathSkipReason } from "../test/paths";
import { CpuBackend, DECODE_PREFETCH_VARIABLES } from "./backend";
import { bindingCandidates, loadBinding } from "./loader";

const X86_PATHS = ALL_KERNEL_PATHS.filter(
  (p) => p === "avx2" || p === "avxvnni" || p === "avx512vnni",
);
const isX86 = process.arch === "x64";

/** The addon file this process loaded (the first candidate that exists). */
function addonFile(): string {
  const file = bindingCandidates()
    .map(([, f]) => f)
    .find((f): f is string => f !== undefined && fs.existsSync(f));
  if (file === undefined) {
    throw new Error("no addon file found");
  }
  return file;
}

/** Prefetch variables for a child process: a string sets the L1 distance alone. */
type PrefetchEnv =
  | string
  | {
      [name in
        | (typeof DECODE_PREFETCH_VARIABLES)[number]
        | "BITNET_DECODE_VECTOR_BITS"
        | "BITNET_HEAD_VECTOR_BITS"
        | "BITNET_DECODE_PREFETCH_NTA"]?: string;
    };

/**
 * Runs `body` (CommonJS; `addon` and `input`, the JSON given, bound) in a child Node.js with the
 * given prefetch settings and parses what it prints.
 */
function inChild(settings: PrefetchEnv, body: string, input: unknown = null): unknown {
  const vars = typeof settings === "string" ? { BITNET_DECODE_PREFETCH_BYTES: settings } : settings;
  const script = `const addon = require(${JSON.stringify(addonFile())});
    const input = JSON.parse(require("node:fs").readFileSync(0, "utf8")); ${body}`;
  const run = spawnSync(process.execPath, ["-e", script], {
    env: {
      ...process.env,
      ...Object.fromEntries(DECODE_PREFETCH_VARIABLES.map((name) => [name, ""])),
      BITNET_DECODE_VECTOR_BITS: "",
      BITNET_HEAD_VECTOR_BITS: "",
      BITNET_DECODE_PREFETCH_NTA: "",
      ...vars,
    },
    input: JSON.stringify(input),
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (run.status !== 0) {
    throw new Error(`child exited ${run.status}: ${run.error?.message ?? run.stderr}`);
  }
  return JSON.parse(run.stdout);
}

/** Random ternary rows of 2560 columns (the 2B-4T width) with their scale, and one token. */
function i2sCase() {
  const random = rng(11);
  const rows = 48;
  const cols = 2560;
  const values = new Int8Array(rows * cols).map(() => Math.floor(random() * 3) - 1);
  const x = new Float32Array(cols).map(() => (random() * 2 - 1) * 3);
  return { weights: packI2S(values, 0.75), rows, cols, x };
}

/** The same kind of rows as TQ2_0, with per-block scales. */
function tq2Case() {
  const random = rng(13);
  const rows = 40;
  const cols = 2560;
  const values = new Int8Array(rows * cols).map(() => Math.floor(random() * 3) - 1);
  const scales = new Float32Array((rows * cols) / 256).map(() => 0.25 + random());
  const x = new Float32Array(cols).map(() => (random() * 2 - 1) * 3);
  return { weights: packTQ2_0(values, scales), rows, cols, x };
}

/** Random f16 rows (finite values of either sign) of 2560 columns, and one token. */
function f16Case() {
  const random = rng(12);
  const rows = 40;
  const cols = 2560;
  const weights = new Uint16Array(rows * cols).map(
    () => ((random() < 0.5 ? 0x8000 : 0) | (0x2000 + Math.floor(random() * 0x2000))) & 0xffff,
  );
  const x = new Float32Array(cols).map(() => random() * 2 - 1);
  return { weights, rows, cols, x };
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe("decode prefetch distance", () => {
  const binding = loadBinding();

  it("reports the distances in use, multiples of 64 within 64 KiB, and the CPU's defaults", () => {
    const p = binding.decodePrefetch();
    const all = [
      p.i2s,
      p.other,
      p.l2,
      p.l2Avx2,
      p.head,
      p.defaultI2s,
      p.defaultOther,
      p.defaultL2,
      p.defaultL2Avx2,
      p.defaultHead,
    ];
    for (const v of all) {
      expect(v % 64).toBe(0);
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(65536);
    }
    const untouched = [
      ...DECODE_PREFETCH_VARIABLES,
      "BITNET_DECODE_VECTOR_BITS",
      "BITNET_HEAD_VECTOR_BITS",
      "BITNET_DECODE_PREFETCH_NTA",
    ].every((v) => (process.env[v] ?? "") === "");
    if (isX86 && untouched) {
      expect([p.i2s, p.other, p.l2, p.l2Avx2, p.head]).toEqual([
        p.defaultI2s,
        p.defaultOther,
        p.defaultL2,
        p.defaultL2Avx2,
        p.defaultHead,
      ]);
      expect(p.vectorBits).toBe(p.defaultVectorBits);
      expect(p.headBits).toBe(p.defaultHeadBits);
      expect(p.nonTemporal).toBe(p.defaultNonTemporal);
      const intel = fs.readFileSync("/proc/cpuinfo", "utf8").includes("GenuineIntel");
      expect([p.defaultI2s, p.defaultOther, p.defaultL2, p.defaultL2Avx2, p.defaultHead]).toEqual(
        intel ? [2048, 2048, 16384, 6144, 3072] : [6144, 6144, 0, 0, 4096],
      );
      expect(p.defaultVectorBits).toBe(intel ? 256 : 512);
      expect(p.defaultHeadBits).toBe(intel ? 256 : 512);
      expect(p.defaultNonTemporal).toBe(!intel);
    }
  });

  it.skipIf(!isX86)(
    `a child process takes BITNET_DECODE_PREFETCH_BYTES, _L2_BYTES, _HEAD_BYTES, _NTA, BITNET_DECODE_VECTOR_BITS and BITNET_HEAD_VECTOR_BITS, and ignores values it cannot use${isX86 ? "" : " (skipped: x86 only)"}`,
    () => {
      const read = (v: PrefetchEnv) =>
        inChild(v, "process.stdout.write(JSON.stringify(addon.decodePrefetch()))");
      const d = binding.decodePrefetch();
      expect(read("0")).toMatchObject({ i2s: 0, other: 0, l2: d.defaultL2, head: d.defaultHead });
      expect(read("4096")).toMatchObject({ i2s: 4096, other: 4096, l2: d.defaultL2 });
      expect(read({ BITNET_DECODE_PREFETCH_HEAD_BYTES: "0" })).toMatchObject({
        i2s: d.defaultI2s,
        l2: d.defaultL2,
        head: 0,
      });
      expect(read({ BITNET_DECODE_PREFETCH_HEAD_BYTES: "8192" })).toMatchObject({ head: 8192 });
      for (const bits of ["256", "512"]) {
        expect(read({ BITNET_DECODE_VECTOR_BITS: bits })).toMatchObject({
          vectorBits: Number(bits),
          i2s: d.defaultI2s,
        });
      }
      for (const bad of ["128", "1024", "256 ", "x"]) {
        expect(read({ BITNET_DECODE_VECTOR_BITS: bad })).toMatchObject({
          vectorBits: d.defaultVectorBits,
        });
        expect(read({ BITNET_HEAD_VECTOR_BITS: bad })).toMatchObject({
          headBits: d.defaultHeadBits,
        });
      }
      for (const bits of ["256", "512"]) {
        expect(read({ BITNET_HEAD_VECTOR_BITS: bits })).toMatchObject({
          headBits: Number(bits),
          vectorBits: d.defaultVectorBits,
        });
      }
      for (const nta of ["0", "1"]) {
        expect(read({ BITNET_DECODE_PREFETCH_NTA: nta })).toMatchObject({
          nonTemporal: nta === "1",
          i2s: d.defaultI2s,
          head: d.defaultHead,
        });
      }
      for (const bad of ["2", "true", " 1", "yes"]) {
        expect(read({ BITNET_DECODE_PREFETCH_NTA: bad })).toMatchObject({
          nonTemporal: d.defaultNonTemporal,
        });
      }
      expect(read({ BITNET_DECODE_PREFETCH_L2_BYTES: "0" })).toMatchObject({
        i2s: d.defaultI2s,
        other: d.defaultOther,
        l2: 0,
        l2Avx2: 0,
      });
      expect(
        read({ BITNET_DECODE_PREFETCH_BYTES: "1024", BITNET_DECODE_PREFETCH_L2_BYTES: "32768" }),
      ).toMatchObject({ i2s: 1024, other: 1024, l2: 32768, l2Avx2: 32768 });
      for (const bad of ["100", "-64", "65600", "2k"]) {
        expect(read(bad)).toMatchObject({ i2s: d.defaultI2s, other: d.defaultOther });
        expect(read({ BITNET_DECODE_PREFETCH_L2_BYTES: bad })).toMatchObject({
          l2: d.defaultL2,
          l2Avx2: d.defaultL2Avx2,
        });
        expect(read({ BITNET_DECODE_PREFETCH_HEAD_BYTES: bad })).toMatchObject({
          head: d.defaultHead,
        });
      }
    },
  );

  for (const path of X86_PATHS) {
    const reason = isX86 ? pathSkipReason(path) : "x86 only";
    it.skipIf(reason !== undefined)(
      `${path}: the one-token I2_S, TQ2_0 and F16 loops give the same bits at every distance${reason ? ` (skipped: ${reason})` : ""}`,
      () => {
        const i2s = i2sCase();
        const tq2 = tq2Case();
        const f16 = f16Case();
        const here = {
          i2s: bits(binding.ternaryGemm(path, "i2_s", i2s.weights, i2s.rows, i2s.cols, i2s.x)),
          tq2: bits(binding.ternaryGemm(path, "tq2_0", tq2.weights, tq2.rows, tq2.cols, tq2.x)),
          f16: bits(binding.f16Gemm(path, f16.weights, f16.rows, f16.x)),
        };
        // The F16 decode loop against f64 sums of the same f16 values (f32 lanes: a few ulps).
        for (let r = 0; r < f16.rows; r++) {
          let want = 0;
          let scale = 0;
          for (let c = 0; c < f16.cols; c++) {
            const w = f16ToF32(f16.weights[r * f16.cols + c]!) * roundToF16(f16.x[c]!);
            want += w;
            scale += Math.abs(w);
          }
          expect(
            Math.abs(new Float32Array(new Uint32Array([here.f16[r]!]).buffer)[0]! - want),
          ).toBeLessThan(scale * 1e-6);
        }
        const input = {
          path,
          i2s: { ...i2s, weights: Array.from(i2s.weights), x: Array.from(i2s.x) },
          tq2: { ...tq2, weights: Array.from(tq2.weights), x: Array.from(tq2.x) },
          f16: { ...f16, weights: Array.from(f16.weights), x: Array.from(f16.x) },
        };
        const body = `
          const { path, i2s, tq2, f16 } = input;
          const a = addon.ternaryGemm(path, "i2_s", new Uint8Array(i2s.weights), i2s.rows, i2s.cols, new Float32Array(i2s.x));
          const c = addon.ternaryGemm(path, "tq2_0", new Uint8Array(tq2.weights), tq2.rows, tq2.cols, new Float32Array(tq2.x));
          const b = addon.f16Gemm(path, new Uint16Array(f16.weights), f16.rows, new Float32Array(f16.x));
          const bits = (v) => Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length));
          process.stdout.write(JSON.stringify({ i2s: bits(a), tq2: bits(c), f16: bits(b) }));`;
        for (const bytes of ["0", "64", "6144", "65536"]) {
          expect(inChild(bytes, body, input), `BITNET_DECODE_PREFETCH_BYTES=${bytes}`).toEqual(
            here,
          );
        }
        for (const l2 of ["0", "64", "16384", "65536"]) {
          const settings = {
            BITNET_DECODE_PREFETCH_BYTES: "2048",
            BITNET_DECODE_PREFETCH_L2_BYTES: l2,
          };
          expect(inChild(settings, body, input), `BITNET_DECODE_PREFETCH_L2_BYTES=${l2}`).toEqual(
            here,
          );
        }
        for (const bits of ["256", "512"]) {
          const settings = { BITNET_DECODE_VECTOR_BITS: bits };
          expect(inChild(settings, body, input), `BITNET_DECODE_VECTOR_BITS=${bits}`).toEqual(here);
        }
        for (const head of ["0", "64", "4096", "65536"]) {
          const settings = { BITNET_DECODE_PREFETCH_HEAD_BYTES: head };
          expect(
            inChild(settings, body, input),
            `BITNET_DECODE_PREFETCH_HEAD_BYTES=${head}`,
          ).toEqual(here);
        }
        // Non-temporal requests or not, with every stream asking (the TQ2_0 rows and the head too).
        for (const nta of ["0", "1"]) {
          const settings = {
            BITNET_DECODE_PREFETCH_NTA: nta,
            BITNET_DECODE_PREFETCH_BYTES: "4096",
            BITNET_DECODE_PREFETCH_HEAD_BYTES: "4096",
          };
          expect(inChild(settings, body, input), `BITNET_DECODE_PREFETCH_NTA=${nta}`).toEqual(here);
        }
      },
    );
  }

  {
    const reason = isX86 ? pathSkipReason("avx512vnni") : "x86 only";
    it.skipIf(reason !== undefined)(
      `avx512vnni: BITNET_HEAD_VECTOR_BITS=256 runs the avx2 path's F16 head, bit for bit, for one token and for several; 512 the 512-bit head, its own bits whatever the step's size${reason ? ` (skipped: ${reason})` : ""}`,
      () => {
        // The 2B-4T width, and an odd row count with columns past the last 32 (the tails).
        const random = rng(14);
        const tokens = 3;
        const input = [
          [40, 2560],
          [41, 2600],
        ].map(([rows, cols]) => ({
          rows: rows!,
          cols: cols!,
          weights: Array.from(
            { length: rows! * cols! },
            () => (random() < 0.5 ? 0x8000 : 0) | (0x2000 + Math.floor(random() * 0x2000)),
          ),
          xs: Array.from({ length: tokens * cols! }, () => random() * 2 - 1),
        }));
        // Every token alone, then all of them in one call: a token's logits must not depend on it.
        const body = `
          const bits = (v) => Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length));
          const run = (path) => {
            const alone = [];
            const together = [];
            for (const { weights, rows, cols, xs } of input) {
              const w = new Uint16Array(weights);
              for (let t = 0; t < xs.length / cols; t++) {
                alone.push(...bits(addon.f16Gemm(path, w, rows, new Float32Array(xs.slice(t * cols, (t + 1) * cols)))));
              }
              together.push(...bits(addon.f16Gemm(path, w, rows, new Float32Array(xs))));
            }
            return { alone, together };
          };
          process.stdout.write(JSON.stringify({ avx512vnni: run("avx512vnni"), avx2: run("avx2") }));`;
        type Runs = Record<"avx512vnni" | "avx2", { alone: number[]; together: number[] }>;
        const narrow = inChild({ BITNET_HEAD_VECTOR_BITS: "256" }, body, input) as Runs;
        const wide = inChild({ BITNET_HEAD_VECTOR_BITS: "512" }, body, input) as Runs;
        for (const runs of [narrow, wide]) {
          expect(runs.avx512vnni.together).toEqual(runs.avx512vnni.alone);
          expect(runs.avx2.together).toEqual(runs.avx2.alone);
        }
        expect(narrow.avx512vnni.alone).toEqual(narrow.avx2.alone);
        // The 512-bit head sums in other lanes: other bits somewhere, each within a few ulps.
        expect(wide.avx512vnni.alone).not.toEqual(wide.avx2.alone);
        const asFloat = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0]!;
        wide.avx512vnni.alone.forEach((u, i) => {
          const a = asFloat(u);
          const b = asFloat(wide.avx2.alone[i]!);
          expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(b)));
        });
      },
    );
  }

  afterAll(cleanup);

  it("a model will not compile with a BITNET_DECODE_PREFETCH_BYTES, _L2_BYTES, _HEAD_BYTES, _NTA, BITNET_DECODE_VECTOR_BITS or BITNET_HEAD_VECTOR_BITS the addon would ignore", {
    timeout: SLOW_TEST_MS,
  }, async () => {
    expect(new CpuBackend().describe().details["decodePrefetch"]).toMatch(
      /^\d+ B ahead in I2_S rows( \(and into L2: \d+ B on the VNNI paths, \d+ B on avx2\))?, TQ2_0 rows (off|\d+ B), F16 head (off|\d+ B( into L2)?)( \(non-temporal\))?; avx512vnni I2_S decode in (256|512)-bit vectors, F16 head in (256|512)-bit/,
    );
    const refusals: [name: string, rule: string][] = [
      ...DECODE_PREFETCH_VARIABLES.map((name): [string, string] => [
        name,
        "a multiple of 64 from 0 to 65536",
      ]),
      ["BITNET_DECODE_VECTOR_BITS", "256 or 512"],
      ["BITNET_HEAD_VECTOR_BITS", "256 or 512"],
      ["BITNET_DECODE_PREFETCH_NTA", "0 or 1"],
    ];
    for (const [name, rule] of refusals) {
      const saved = process.env[name];
      process.env[name] = "1000";
      try {
        await expect(cpuModel("tiny-i2s", { threads: 2 })).rejects.toThrow(
          new RegExp(`${name} must be ${rule}, got "1000"`),
        );
      } finally {
        if (saved === undefined) {
          delete process.env[name];
        } else {
          process.env[name] = saved;
        }
      }
    }
  });
});
