/** Distances between two next-token distributions given as logits rows. */

export interface PositionMetrics {
  /** Same argmax. */
  readonly top1: boolean;
  /** KL(reference ‖ candidate) in nats, from the softmaxes of the logits. */
  readonly kl: number;
  /** Largest |Δ log-prob| over the reference's 10 most likely tokens. */
  readonly maxDeltaLogProbTop10: number;
  /** Cosine similarity of the raw logit vectors. */
  readonly cosine: number;
}

function logSoftmax(logits: ArrayLike<number>, offset: number, n: number): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    max = Math.max(max, logits[offset + i]!);
  }
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += Math.exp(logits[offset + i]! - max);
  }
  const lse = max + Math.log(sum);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = logits[offset + i]! - lse;
  }
  return out;
}

export function argmaxOf(logits: ArrayLike<number>, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) {
    if (logits[offset + i]! > logits[offset + best]!) {
      best = i;
    }
  }
  return best;
}

/** Compares a candidate row against a reference row (both length n). */
export function comparePosition(
  reference: ArrayLike<number>,
  refOffset: number,
  candidate: ArrayLike<number>,
  candOffset: number,
  n: number,
): PositionMetrics {
  const lp = logSoftmax(reference, refOffset, n);
  const lq = logSoftmax(candidate, candOffset, n);
  let kl = 0;
  let dot = 0;
  let nr = 0;
  let nc = 0;
  for (let i = 0; i < n; i++) {
    const p = Math.exp(lp[i]!);
    if (p > 0) {
      kl += p * (lp[i]! - lq[i]!);
    }
    const a = reference[refOffset + i]!;
    const b = candidate[candOffset + i]!;
    dot += a * b;
    nr += a * a;
    nc += b * b;
  }
  const top = topIndices(lp, 10);
  let maxDelta = 0;
  for (const i of top) {
    maxDelta = Math.max(maxDelta, Math.abs(lp[i]! - lq[i]!));
  }
  return {
    top1: argmaxOf(reference, refOffset, n) === argmaxOf(candidate, candOffset, n),
    kl: Math.max(0, kl),
    maxDeltaLogProbTop10: maxDelta,
    cosine: dot / Math.sqrt(nr * nc),
  };
}

/** Indices of the k largest values (O(n·k), k small). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if (best.length < k || values[i]! > values[best[best.length - 1]!]!) {
      let at = best.length;
      while (at > 0 && values[best[at - 1]!]! < values[i]!) {
        at--;
      }
      best.splice(at, 0, i);
      if (best.length > k) {
        best.pop();
      }
    }
  }
  return best;
}

export interface Summary {
  readonly positions: number;
  readonly top1Agreement: number;
  readonly meanKl: number;
  readonly maxKl: number;
  readonly meanMaxDeltaLogProbTop10: number;
  readonly minCosine: number;
  readonly meanCosine: number;
}

export function summarize(metrics: readonly PositionMetrics[]): Summary {
  const n = metrics.length;
  const mean = (f: (m: PositionMetrics) => number) =>
    metrics.reduce((s, m) => s + f(m), 0) / Math.max(n, 1);
  return {
    positions: n,
    top1Agreement: mean((m) => (m.top1 ? 1 : 0)),
    meanKl: mean((m) => m.kl),
    maxKl: metrics.reduce((s, m) => Math.max(s, m.kl), 0),
    meanMaxDeltaLogProbTop10: mean((m) => m.maxDeltaLogProbTop10),
    minCosine: metrics.reduce((s, m) => Math.min(s, m.cosine), 1),
    meanCosine: mean((m) => m.cosine),
  };
}
