/**
 * The forward pass as data: a list of named ops over named per-token buffers. An architecture
 * builds it once; a backend compiles and runs it. Buffer names follow llama.cpp's `cb(...)`
 * names (`attn_norm-0`, `attn_sub_norm-0`, `ffn_sub_norm-0`, `l_out-0`, `result_norm`) so
 * intermediates can be compared with llama.cpp's tensor by tensor.
 */
import type { FfnActivation, HParams } from "./hparams";

export type GraphOp =
  /** out[t] = table row of token t (dequantized). */
  | { readonly kind: "embed"; readonly table: string; readonly out: string }
  /** out = x / sqrt(mean(x²) + eps) ⊙ weight. */
  | { readonly kind: "rms_norm"; readonly x: string; readonly weight: string; readonly out: string }
  /** out = W x (ternary W: with the model's activation quantization), times an optional scalar tensor. */
  | {
      readonly kind: "linear";
      readonly x: string;
      readonly weight: string;
      readonly scale: string | undefined;
      readonly out: string;
    }
  /** NeoX RoPE on the first nRot dims of each of `heads` heads, at each token's position. */
  | { readonly kind: "rope"; readonly x: string; readonly heads: number; readonly out: string }
  /** Stores k/v of the batch in `layer`'s KV cache, then causal GQA attention of q over the cache. */
  | {
      readonly kind: "attention";
      readonly q: string;
      readonly k: string;
      readonly v: string;
      readonly layer: number;
      readonly out: string;
    }
  /** out = a + b. */
  | { readonly kind: "add"; readonly a: string; readonly b: string; readonly out: string }
  /** out = act(gate) ⊙ up. */
  | {
      readonly kind: "glu";
      readonly gate: string;
      readonly up: string;
      readonly activation: FfnActivation;
      readonly out: string;
    }
  /** out = W x for the rows that need logits (the output head). */
  | { readonly kind: "output"; readonly x: string; readonly weight: string; readonly out: string };

export type GraphOpKind = GraphOp["kind"];

/**
 * Each op kind's number in the op specs handed to native backends: the C++ `OpKind` enums of
 * kernels-cpu (native/model.h) and kernels-cuda (native/model.h) use these values.
 */
export const NATIVE_OP_IDS: Readonly<Record<GraphOpKind, number>> = {
  embed: 0,
  rms_norm: 1,
  linear: 2,
  rope: 3,
  attention: 4,
  add: 5,
  glu: 6,
  output: 7,
};

export interface Graph {
  readonly hparams: HParams;
  /** Row width (values per token) of every buffer. */
  readonly buffers: Readonly<Record<string, number>>;
  readonly ops: readonly GraphOp[];
  /** The buffer holding the logits. */
  readonly logits: string;
}

/** Builds a graph while checking that every input exists and widths agree. */
export class GraphBuilder {
  readonly #buffers: Record<string, number> = {};
  readonly #ops: GraphOp[] = [];

  constructor(readonly hparams: HParams) {}

  width(name: string): number {
    const w = this.#buffers[name];
    if (w === undefined) {
      throw new Error(`graph: buffer "${name}" is used before it is written`);
    }
    return w;
  }

  #define(name: string, width: number): string {
    if (this.#buffers[name] !== undefined) {
      throw new Error(`graph: buffer "${name}" is written twice`);
    }
    this.#buffers[name] = width;
    return name;
  }

  embed(table: string, out: string): string {
    this.#ops.push({ kind: "embed", table, out });
    return this.#define(out, this.hparams.nEmbd);
  }

  rmsNorm(x: string, weight: string, out: string): string {
    this.#ops.push({ kind: "rms_norm", x, weight, out });
    return this.#define(out, this.width(x));
  }

  linear(x: string, weight: string, outWidth: number, out: string, scale?: string): string {
    this.width(x);
    this.#ops.push({ kind: "linear", x, weight, scale, out });
    return this.#define(out, outWidth);
  }

  rope(x: string, heads: number, out: string): string {
    this.#ops.push({ kind: "rope", x, heads, out });
    return this.#define(out, this.width(x));
  }

  attention(q: string, k: string, v: string, layer: number, out: string): string {
    this.width(k);
    this.width(v);
    this.#ops.push({ kind: "attention", q, k, v, layer, out });
    return this.#define(out, this.width(q));
  }

  add(a: string, b: string, out: string): string {
    if (this.width(a) !== this.width(b)) {
      throw new Error(`graph: cannot add "${a}" and "${b}" of different widths`);
    }
    this.#ops.push({ kind: "add", a, b, out });
    return this.#define(out, this.width(a));
  }

  glu(gate: string, up: string, activation: FfnActivation, out: string): string {
    this.width(up);
    this.#ops.push({ kind: "glu", gate, up, activation, out });
    return this.#define(out, this.width(gate));
  }

  output(x: string, weight: string, out: string): string {
    this.width(x);
    this.#ops.push({ kind: "output", x, weight, out });
    return this.#define(out, this.hparams.vocabSize);
  }

  build(logits: string): Graph {
    this.width(logits);
    return { hparams: this.hparams, buffers: { ...this.#buffers }, ops: [...this.#ops], logits };
  }
}
