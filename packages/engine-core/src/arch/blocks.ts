/**
 * The BitNet transformer block, shared by every BitNet architecture: pre-norm attention with a
 * sub-norm before the output projection, and a gated FFN with a sub-norm before the down
 * projection (spec/bitnet-arch.md §3). Architectures differ in the FFN activation and in
 * optional per-tensor scales.
 */
import type { GgmlTypeName } from "@bitnet-ts/gguf";
import { type Graph, GraphBuilder } from "../graph";
import type { HParams } from "../hparams";
import { EMBEDDING_TYPES, NORM_TYPES, PROJECTION_TYPES, type TensorSpec } from "./types";

const PROJECTIONS = [
  "attn_q",
  "attn_k",
  "attn_v",
  "attn_output",
  "ffn_gate",
  "ffn_up",
  "ffn_down",
] as const;

export function bitnetTensors(hp: HParams, options: { scales: boolean }): TensorSpec[] {
  const { nEmbd: d, nFf: ff, nLayer } = hp;
  const kv = hp.headDim * hp.nHeadKv;
  const specs: TensorSpec[] = [
    { name: "token_embd.weight", shape: [d, hp.vocabSize], types: EMBEDDING_TYPES },
    { name: "output_norm.weight", shape: [d], types: NORM_TYPES },
    { name: "output.weight", shape: [d, hp.vocabSize], types: EMBEDDING_TYPES, optional: true },
  ];
  const shapes: Record<(typeof PROJECTIONS)[number], number[]> = {
    attn_q: [d, d],
    attn_k: [d, kv],
    attn_v: [d, kv],
    attn_output: [d, d],
    ffn_gate: [d, ff],
    ffn_up: [d, ff],
    ffn_down: [ff, d],
  };
  for (let il = 0; il < nLayer; il++) {
    const p = `blk.${il}`;
    const norm = (name: string, width: number): TensorSpec => ({
      name: `${p}.${name}.weight`,
      shape: [width],
      types: NORM_TYPES,
    });
    specs.push(
      norm("attn_norm", d),
      norm("attn_sub_norm", d),
      norm("ffn_norm", d),
      norm("ffn_sub_norm", ff),
    );
    for (const proj of PROJECTIONS) {
      specs.push({ name: `${p}.${proj}.weight`, shape: shapes[proj], types: PROJECTION_TYPES });
      if (options.scales) {
        specs.push({
          name: `${p}.${proj}.scale`,
          shape: [1],
          types: ["F32"] as GgmlTypeName[],
          optional: true,
        });
      }
    }
  }
  return specs;
}

export function bitnetGraph(hp: HParams, present: (name: string) => boolean): Graph {
  const g = new GraphBuilder(hp);
  const kv = hp.headDim * hp.nHeadKv;
  const scale = (p: string, proj: string): string | undefined =>
    present(`${p}.${proj}.scale`) ? `${p}.${proj}.scale` : undefined;
  let h = g.embed("token_embd.weight", "inp_embd");
  for (let il = 0; il < hp.nLayer; il++) {
    const p = `blk.${il}`;
    const x = g.rmsNorm(h, `${p}.attn_norm.weight`, `attn_norm-${il}`);
    const q = g.linear(x, `${p}.attn_q.weight`, hp.nEmbd, `Qcur-${il}`, scale(p, "attn_q"));
    const k = g.linear(x, `${p}.attn_k.weight`, kv, `Kcur-${il}`, scale(p, "attn_k"));
    const v = g.linear(x, `${p}.attn_v.weight`, kv, `Vcur-${il}`, scale(p, "attn_v"));
    const qr = g.rope(q, hp.nHead, `Qcur_rope-${il}`);
    const kr = g.rope(k, hp.nHeadKv, `Kcur_rope-${il}`);
    const attn = g.attention(qr, kr, v, il, `kqv_out-${il}`);
    const sub = g.rmsNorm(attn, `${p}.attn_sub_norm.weight`, `attn_sub_norm-${il}`);
    const o = g.linear(
      sub,
      `${p}.attn_output.weight`,
      hp.nEmbd,
      `attn_o_out-${il}`,
      scale(p, "attn_output"),
    );
    const ffnIn = g.add(o, h, `ffn_inp-${il}`);
    const f = g.rmsNorm(ffnIn, `${p}.ffn_norm.weight`, `ffn_norm-${il}`);
    const gate = g.linear(
      f,
      `${p}.ffn_gate.weight`,
      hp.nFf,
      `ffn_gate-${il}`,
      scale(p, "ffn_gate"),
    );
    const up = g.linear(f, `${p}.ffn_up.weight`, hp.nFf, `ffn_up-${il}`, scale(p, "ffn_up"));
    const act = g.glu(gate, up, hp.ffnActivation, `ffn_gate_par-${il}`);
    const subF = g.rmsNorm(act, `${p}.ffn_sub_norm.weight`, `ffn_sub_norm-${il}`);
    const down = g.linear(
      subF,
      `${p}.ffn_down.weight`,
      hp.nEmbd,
      `ffn_out-${il}`,
      scale(p, "ffn_down"),
    );
    h = g.add(down, ffnIn, `l_out-${il}`);
  }
  const y = g.rmsNorm(h, "output_norm.weight", "result_norm");
  const head = present("output.weight") ? "output.weight" : "token_embd.weight";
  return g.build(g.output(y, head, "result_output"));
}

/** The vocabulary size implied by the embedding tensor (the `vocab_size` key is optional). */
export { EMBEDDING_TYPES };
