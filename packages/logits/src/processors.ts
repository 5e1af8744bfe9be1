/**
 * The logits processors of llama.cpp's sampler chain (llama-sampling.cpp of the bitnet.cpp fork;
 * formulas in docs/sampling.md), each operating on a Candidates list.
 */
import type { Candidates } from "./candidates";

/** Adds a bias to the logits of the given tokens. */
export function applyLogitBias(c: Candidates, bias: ReadonlyMap<number, number>): void {
  if (bias.size === 0) {
    return;
  }
  for (let i = 0; i < c.size; i++) {
    const b = bias.get(c.ids[i]);
    if (b !== undefined) {
      c.logits[i] += b;
    }
  }
  c.sorted = false;
}

export interface PenaltySettings {
  readonly repeat: number;
  readonly frequency: number;
  readonly presence: number;
}

/**
 * Repetition penalties over the counts of recent tokens: l ≤ 0 ? l × repeat : l / repeat, then
 * l −= count × frequency + presence. Tokens in `exempt` (the newline unless penalize_nl) keep
 * their logit.
 */
export function applyPenalties(
  c: Candidates,
  counts: ReadonlyMap<number, number>,
  s: PenaltySettings,
  exempt?: number,
): void {
  if (counts.size === 0 || (s.repeat === 1 && s.frequency === 0 && s.presence === 0)) {
    return;
  }
  for (let i = 0; i < c.size; i++) {
    const id = c.ids[i];
    const count = counts.get(id);
    if (count === undefined || count === 0 || id === exempt) {
      continue;
    }
    let l = c.logits[i];
    l = l <= 0 ? l * s.repeat : l / s.repeat;
    l -= count * s.frequency + s.presence;
    c.logits[i] = l;
  }
  c.sorted = false;
}

/** Keeps the k highest logits (k ≤ 0: all), sorted. */
export function topK(c: Candidates, k: number, minKeep = 0): void {
  let keep = k <= 0 ? c.size : Math.min(k, c.size);
  keep = Math.max(keep, minKeep);
  c.keepTop(keep);
}

/** Locally typical sampling (p ≥ 1: off). */
export function typical(c: Candidates, p: number, minKeep = 0): void {
  if (p >= 1) {
    return;
  }
  c.softmax();
  let entropy = 0;
  for (let i = 0; i < c.size; i++) {
    const q = c.probs[i];
    if (q > 0) {
      entropy -= q * Math.log(q);
    }
  }
  const order = Array.from({ length: c.size }, (_, i) => i);
  const score = order.map((i) => Math.abs(-Math.log(c.probs[i]) - entropy));
  order.sort((a, b) => score[a] - score[b] || a - b);
  let cum = 0;
  let last = order.length;
  for (let i = 0; i < order.length; i++) {
    cum += c.probs[order[i]];
    if (cum > p && i >= minKeep - 1) {
      last = i + 1;
      break;
    }
  }
  c.select(order.slice(0, last), false);
}

/** Nucleus sampling: the smallest prefix whose probability reaches p (p ≥ 1: off). */
export function topP(c: Candidates, p: number, minKeep = 1): void {
  if (p >= 1) {
    return;
  }
  c.softmax();
  let cum = 0;
  let last = c.size;
  for (let i = 0; i < c.size; i++) {
    cum += c.probs[i];
    if (cum >= p && i + 1 >= minKeep) {
      last = i + 1;
      break;
    }
  }
  c.truncate(last);
}

/** Keeps tokens with p ≥ p_min · p_max, i.e. l ≥ l_max + ln p_min (p ≤ 0: off). */
export function minP(c: Candidates, p: number, minKeep = 1): void {
  if (p <= 0 || c.size === 0) {
    return;
  }
  c.sort();
  const threshold = c.logits[0] + Math.log(p);
  let last = 1;
  while (last < c.size && c.logits[last] >= threshold) {
    last++;
  }
  c.truncate(Math.max(last, Math.min(minKeep, c.size)));
}

/** Divides the logits by the temperature. */
export function temperature(c: Candidates, t: number): void {
  for (let i = 0; i < c.size; i++) {
    c.logits[i] /= t;
  }
}

/** Index of the largest logit (first on ties). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let value = logits[0];
  for (let i = 1; i < logits.length; i++) {
    if (logits[i] > value) {
      value = logits[i];
      best = i;
    }
  }
  return best;
}
