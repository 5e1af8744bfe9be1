/**
 * The pure-TypeScript reference backend: interprets the graph op by op with the kernels in
 * ops.ts. Slow, obviously correct, the oracle of every other backend.
 */
import { probeMemory } from "@bitnet-ts/device-probe";
// The rules entry, not the package root: the root's verifier imports node:fs and node:crypto.
import { type KernelRules, ONE_CALL_PER_PROJECTION } from "@bitnet-ts/receipts/rules";
import type {
  Backend,
  BackendDescription,
  Capacity,
  CaptureRequest,
  CompiledModel,
  CompileOptions,
  LoadProgress,
  SequenceRun,
  StepOutput,
} from "../backend";
import { EngineError, EngineErrorCode } from "../errors";
import type { GraphOp } from "../graph";
import type { BoundTensor, ModelDescription } from "../model";
import { SequenceTable } from "../sequences";
import { flattenRuns, StepQueue, splitLogits } from "../steps";
import { checkStepBuffers, validateStep } from "../validate";
import {
  add,
  attendOne,
  F16_TABLE,
  glu,
  headRow,
  linear,
  type Numerics,
  rmsNorm,
  ropeNeox,
  toCache,
} from "./ops";
import { floatValues, type LinearWeight, linearWeight } from "./weights";

export interface ReferenceBackendOptions {
  /** "ggml" (default): f32 with ggml's rounding points; "f64": doubles throughout (the crossval yardstick). */
  readonly numerics?: Numerics;
}

/** Kernel ids "ref.<op>.<type>": one id per op kind and type, seven projections a layer. */
export const REFERENCE_KERNEL_RULES: KernelRules = {
  backends: ["reference", "reference-f64"],
  idPrefix: "ref.",
  kernelPaths: null,
  pathSegment: 1,
  ternaryTags: {
    I2_S: [".linear.i2_s."],
    TQ2_0: [".linear.tq2_0."],
    TQ1_0: [".linear.tq1_0."],
  },
  outputTag: ".output.",
  headOptions: {},
  calls: ONE_CALL_PER_PROJECTION,
};

export class ReferenceBackend implements Backend {
  readonly name: string;
  readonly needsTensorData = true;
  readonly batchInvariance = "bit-exact";
  readonly numerics: Numerics;

  constructor(options: ReferenceBackendOptions = {}) {
    this.numerics = options.numerics ?? "ggml";
    this.name = this.numerics === "ggml" ? "reference" : "reference-f64";
  }

  /**
   * Compiles a description, awaiting each tensor's bytes (`BoundTensor.read()`), so a model
   * described from a byte source (a browser `File`, HTTP) is read one tensor at a time.
   */
  async compile(model: ModelDescription, options: CompileOptions = {}): Promise<CompiledModel> {
    const compiled = new ReferenceModel(model, this.numerics, this.name, options);
    await compiled.loadWeights(options.onProgress);
    return compiled;
  }

  describe(): BackendDescription {
    return {
      device: "JavaScript (any CPU)",
      details: { numerics: this.numerics === "ggml" ? "f32 (ggml rounding)" : "f64" },
    };
  }
}

interface SequenceState {
  length: number;
  /** Per layer: cached keys/values, [capacity × kvWidth]. */
  keys: Float64Array[];
  values: Float64Array[];
}

/** A table (embedding or head) kept as raw f16 bits when it is F16, else as f32 values. */
interface Table {
  readonly typeName: string;
  readonly f16Bits: Uint16Array | undefined;
  readonly floats: Float32Array | undefined;
}

/**
 * A tensor whose bytes are in hand, for the synchronous unpacking in weights.ts. Each is unpacked
 * right after it is read, so a model read from a source never holds all its raw bytes at once.
 */
async function resident(t: BoundTensor): Promise<BoundTensor> {
  const data = await t.read();
  return { info: t.info, data, read: async () => data };
}

// Host memory to assume for KV caches where the host does not say (some browsers).
const UNKNOWN_HOST_MEMORY_BYTES = 1 << 30;

/** Memory available for new work now (device-probe: MemAvailable on Linux, navigator in a browser). */
function availableHostBytes(): number {
  const available = probeMemory().availableBytes;
  return available > 0 ? available : UNKNOWN_HOST_MEMORY_BYTES;
}

function table(t: BoundTensor): Table {
  if (t.info.type.name === "F16") {
    const bits =
      t.data.byteOffset % 2 === 0
        ? new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 2)
        : new Uint16Array(t.data.slice().buffer);
    return { typeName: "F16", f16Bits: bits, floats: undefined };
  }
  return { typeName: t.info.type.name, f16Bits: undefined, floats: floatValues(t) };
}

class ReferenceModel implements CompiledModel {
  readonly description: ModelDescription;
  readonly backendName: string;
  readonly contextLength: number;
  readonly #mode: Numerics;
  readonly #linear = new Map<string, LinearWeight>();
  readonly #norms = new Map<string, Float32Array>();
  readonly #scales = new Map<string, number>();
  readonly #tables = new Map<string, Table>();
  readonly #sequences = new SequenceTable<SequenceState>();
  readonly #kernels = new Map<string, number>();
  readonly #steps = new StepQueue();
  /** The host memory KV caches may use: what was available at compile time. */
  readonly #kvBudget = availableHostBytes();

  constructor(model: ModelDescription, mode: Numerics, name: string, options: CompileOptions) {
    this.description = model;
    this.backendName = name;
    this.#mode = mode;
    const hp = model.hparams;
    const ctx = options.contextLength ?? hp.contextLength;
    if (!Number.isInteger(ctx) || ctx < 1) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not compile the model - context length ${ctx} must be a positive integer.`,
      );
    }
    this.contextLength = ctx;
  }

  /**
   * Reads and unpacks every weight the graph uses (called once, by compile), reporting phase
   * "read" per weight-bearing op: from a byte source (a browser File, HTTP) it takes a while.
   */
  async loadWeights(onProgress?: (progress: LoadProgress) => void): Promise<void> {
    const model = this.description;
    const weighted = new Set(["embed", "output", "rms_norm", "linear"]);
    const total = model.graph.ops.filter((op) => weighted.has(op.kind)).length;
    let done = 0;
    const tensor = (name: string): BoundTensor => {
      const t = model.tensors.get(name);
      if (t === undefined) {
        throw new EngineError(
          EngineErrorCode.MISSING_TENSOR,
          `could not compile the model - the graph uses tensor "${name}", which is not bound.`,
        );
      }
      return t;
    };
    for (const op of model.graph.ops) {
      switch (op.kind) {
        case "embed":
        case "output":
          if (!this.#tables.has(op.kind === "embed" ? op.table : op.weight)) {
            const name = op.kind === "embed" ? op.table : op.weight;
            this.#tables.set(name, table(await resident(tensor(name))));
          }
          break;
        case "rms_norm":
          this.#norms.set(op.weight, floatValues(await resident(tensor(op.weight))));
          break;
        case "linear":
          this.#linear.set(op.weight, linearWeight(await resident(tensor(op.weight))));
          if (op.scale !== undefined) {
            this.#scales.set(op.scale, floatValues(await resident(tensor(op.scale)))[0]!);
          }
          break;
        default:
          continue;
      }
      onProgress?.({ phase: "read", done: ++done, total });
    }
  }

  get sequenceCount(): number {
    return this.#sequences.size;
  }

  kernelCounts(): ReadonlyMap<string, number> {
    return new Map(this.#kernels);
  }

  capacity(): Capacity {
    const hp = this.description.hparams;
    // Keys and values in doubles, every layer.
    const perToken = 2 * hp.nLayer * hp.nHeadKv * hp.headDim * 8;
    let used = 0;
    for (const s of this.#sequences.values()) {
      for (const k of s.keys) {
        used += 2 * k.byteLength;
      }
    }
    return {
      kvBytesPerToken: perToken,
      kvBudgetBytes: this.#kvBudget,
      kvUsedBytes: used,
      freeBytes: availableHostBytes(),
      maxSequences: undefined,
      liveSequences: this.#sequences.size,
      contextLength: this.contextLength,
    };
  }

  #count(id: string): void {
    this.#kernels.set(id, (this.#kernels.get(id) ?? 0) + 1);
  }

  createSequence(): number {
    const L = this.description.hparams.nLayer;
    return this.#sequences.add({
      length: 0,
      keys: new Array(L).fill(new Float64Array(0)),
      values: new Array(L).fill(new Float64Array(0)),
    });
  }

  forkSequence(sequence: number): number {
    const src = this.#sequences.get(sequence);
    return this.#sequences.add({
      length: src.length,
      keys: src.keys.map((k) => k.slice()),
      values: src.values.map((v) => v.slice()),
    });
  }

  truncateSequence(sequence: number, length: number): void {
    this.#sequences.truncate(sequence, length);
  }

  freeSequence(sequence: number): void {
    this.#sequences.delete(sequence);
  }

  sequenceLength(sequence: number): number {
    return this.#sequences.get(sequence).length;
  }

  async dispose(): Promise<void> {
    if (this.#sequences.dispose()) {
      await this.#steps.idle();
    }
  }

  #ensureCapacity(s: SequenceState, needed: number, kvWidth: number): void {
    for (let il = 0; il < s.keys.length; il++) {
      if (s.keys[il]!.length >= needed * kvWidth) {
        continue;
      }
      const capacity = Math.min(
        this.contextLength,
        Math.max(needed, 2 * (s.keys[il]!.length / kvWidth), 64),
      );
      const grow = (old: Float64Array): Float64Array => {
        const next = new Float64Array(capacity * kvWidth);
        next.set(old.subarray(0, Math.min(old.length, next.length)));
        return next;
      };
      s.keys[il] = grow(s.keys[il]!);
      s.values[il] = grow(s.values[il]!);
    }
  }

  step(runs: readonly SequenceRun[], capture?: CaptureRequest): Promise<StepOutput> {
    return this.#steps.run(async () => this.#step(runs, capture));
  }

  #step(runs: readonly SequenceRun[], capture?: CaptureRequest): StepOutput {
    this.#sequences.assertAlive();
    const hp = this.description.hparams;
    const mode = this.#mode;
    // --- validate everything before touching any state ---
    const total = validateStep(
      runs,
      (id) => this.#sequences.get(id).length,
      hp.vocabSize,
      this.contextLength,
    );
    checkStepBuffers(this.description.graph, total, capture, undefined);
    // --- flatten the runs into one batch ---
    const flat = flattenRuns(runs, total, (id) => this.#sequences.get(id).length);
    const { tokens, positions, wantLogits: wantsLogits } = flat;
    const owner: SequenceState[] = Array.from(flat.sequences, (id) => this.#sequences.get(id));
    const kvWidth = hp.headDim * hp.nHeadKv;
    for (const run of runs) {
      const s = this.#sequences.get(run.sequence);
      this.#ensureCapacity(s, s.length + run.tokens.length, kvWidth);
    }
    // --- run the graph ---
    const buffers = new Map<string, Float64Array>();
    const widths = this.description.graph.buffers;
    const get = (name: string): Float64Array => buffers.get(name)!;
    const alloc = (name: string): Float64Array => {
      const b = new Float64Array(total * widths[name]!);
      buffers.set(name, b);
      return b;
    };
    let logits: Float32Array = new Float32Array(0);
    for (const op of this.description.graph.ops) {
      this.#runOp(op, {
        tokens,
        positions,
        owner,
        wantsLogits,
        total,
        kvWidth,
        get,
        alloc,
        mode,
        setLogits: (l) => (logits = l),
      });
    }
    for (const run of runs) {
      this.#sequences.get(run.sequence).length += run.tokens.length;
    }
    const result = splitLogits(runs, flat, logits, hp.vocabSize);
    let captured: Map<string, Float32Array> | undefined;
    if (capture !== undefined) {
      captured = new Map();
      for (const name of capture.buffers) {
        captured.set(name, Float32Array.from(buffers.get(name)!));
      }
    }
    return captured === undefined ? { runs: result } : { runs: result, captured };
  }

  #runOp(
    op: GraphOp,
    ctx: {
      tokens: Int32Array;
      positions: Int32Array;
      owner: SequenceState[];
      wantsLogits: Uint8Array;
      total: number;
      kvWidth: number;
      get: (name: string) => Float64Array;
      alloc: (name: string) => Float64Array;
      mode: Numerics;
      setLogits: (l: Float32Array) => void;
    },
  ): void {
    const hp = this.description.hparams;
    const { total, mode } = ctx;
    switch (op.kind) {
      case "embed": {
        const t = this.#tables.get(op.table)!;
        const out = ctx.alloc(op.out);
        const d = hp.nEmbd;
        for (let i = 0; i < total; i++) {
          const row = ctx.tokens[i]! * d;
          for (let k = 0; k < d; k++) {
            out[i * d + k] =
              t.f16Bits !== undefined ? F16_VALUE(t.f16Bits[row + k]!) : t.floats![row + k]!;
          }
        }
        this.#count(`ref.embed.${t.typeName.toLowerCase()}`);
        return;
      }
      case "rms_norm": {
        const x = ctx.get(op.x);
        const w = this.#norms.get(op.weight)!;
        rmsNorm(x, w, ctx.alloc(op.out), total, w.length, hp.rmsEps, mode);
        this.#count("ref.rms_norm.f32");
        return;
      }
      case "linear": {
        const w = this.#linear.get(op.weight)!;
        const scale = op.scale === undefined ? 1 : this.#scales.get(op.scale)!;
        linear(w, ctx.get(op.x), ctx.alloc(op.out), total, scale, mode);
        const act =
          w.activationQuant === "per-token-int8"
            ? ".i8"
            : w.activationQuant === "q8_k"
              ? ".q8_k"
              : "";
        this.#count(`ref.linear.${w.typeName.toLowerCase()}${act}`);
        return;
      }
      case "rope": {
        ropeNeox(
          ctx.get(op.x),
          ctx.alloc(op.out),
          ctx.positions,
          op.heads,
          hp.headDim,
          hp.nRot,
          hp.ropeFreqBase,
          mode,
        );
        this.#count("ref.rope.neox");
        return;
      }
      case "attention": {
        const q = ctx.get(op.q);
        const k = ctx.get(op.k);
        const v = ctx.get(op.v);
        const out = ctx.alloc(op.out);
        const kvw = ctx.kvWidth;
        // Store the batch's keys and values first, so tokens of one sequence in this batch see
        // each other (causally) exactly as if they had been decoded one at a time.
        for (let i = 0; i < total; i++) {
          const s = ctx.owner[i]!;
          const p = ctx.positions[i]!;
          const keys = s.keys[op.layer]!;
          const values = s.values[op.layer]!;
          for (let j = 0; j < kvw; j++) {
            keys[p * kvw + j] = toCache(k[i * kvw + j]!, mode);
            values[p * kvw + j] = toCache(v[i * kvw + j]!, mode);
          }
        }
        for (let i = 0; i < total; i++) {
          const s = ctx.owner[i]!;
          attendOne(
            q,
            i * hp.nEmbd,
            s.keys[op.layer]!,
            s.values[op.layer]!,
            ctx.positions[i]! + 1,
            hp.nHead,
            hp.nHeadKv,
            hp.headDim,
            out,
            i * hp.nEmbd,
            mode,
          );
        }
        this.#count(mode === "ggml" ? "ref.attention.gqa.f16kv" : "ref.attention.gqa.f64");
        return;
      }
      case "add": {
        const n = total * this.description.graph.buffers[op.out]!;
        add(ctx.get(op.a), ctx.get(op.b), ctx.alloc(op.out), n, mode);
        this.#count("ref.add.f32");
        return;
      }
      case "glu": {
        const n = total * this.description.graph.buffers[op.out]!;
        glu(ctx.get(op.gate), ctx.get(op.up), ctx.alloc(op.out), n, op.activation, mode);
        this.#count(`ref.glu.${op.activation}`);
        return;
      }
      case "output": {
        const t = this.#tables.get(op.weight)!;
        const x = ctx.get(op.x);
        const vocab = hp.vocabSize;
        let rows = 0;
        for (let i = 0; i < total; i++) {
          rows += ctx.wantsLogits[i]!;
        }
        const logits = new Float32Array(rows * vocab);
        let r = 0;
        for (let i = 0; i < total; i++) {
          if (ctx.wantsLogits[i]) {
            headRow(x, i * hp.nEmbd, hp.nEmbd, vocab, t.f16Bits, t.floats, logits, r * vocab, mode);
            r++;
          }
        }
        ctx.setLogits(logits);
        if (rows > 0) {
          this.#count(`ref.output.${t.typeName.toLowerCase()}`);
        }
        return;
      }
    }
  }
}

function F16_VALUE(bits: number): number {
  return F16_TABLE[bits]!;
}
