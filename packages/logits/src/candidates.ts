/**
 * The candidate list the sampler chain works on, llama.cpp's llama_token_data_array: token ids
 * with logits (and probabilities after softmax), possibly sorted by logit descending.
 */
export class Candidates {
  ids: Int32Array;
  logits: Float32Array;
  probs: Float32Array;
  size: number;
  sorted = false;

  /** Full-vocabulary buffers from the constructor, kept so {@link reset} can refill them. */
  #full: { ids: Int32Array; logits: Float32Array; probs: Float32Array };

  constructor(logits: Float32Array) {
    const n = logits.length;
    this.#full = {
      ids: new Int32Array(n),
      logits: new Float32Array(n),
      probs: new Float32Array(n),
    };
    this.ids = this.#full.ids;
    this.logits = this.#full.logits;
    this.probs = this.#full.probs;
    this.size = n;
    this.reset(logits);
  }

  /**
   * Refills the list from a new row of logits, reusing this list's buffers when the row has the
   * same length (a sampler keeps one list instead of 1.5 MB of garbage per token on a
   * 128k vocabulary). Lists obtained earlier from this one's fields are overwritten.
   */
  reset(logits: Float32Array): this {
    const n = logits.length;
    if (this.#full.ids.length !== n) {
      this.#full = {
        ids: new Int32Array(n),
        logits: new Float32Array(n),
        probs: new Float32Array(n),
      };
    }
    const { ids, logits: own, probs } = this.#full;
    for (let i = 0; i < n; i++) {
      ids[i] = i;
    }
    own.set(logits);
    probs.fill(0);
    this.ids = ids;
    this.logits = own;
    this.probs = probs;
    this.size = n;
    this.sorted = false;
    return this;
  }

  /**
   * Refills the list with a row's best candidates, already ranked best first (a backend's top-k
   * reduction: higher logit first, ties by lower id), as {@link keepTop} would leave them.
   */
  resetTop(ids: Int32Array, logits: Float32Array): this {
    const n = ids.length;
    this.ids = Int32Array.from(ids);
    this.logits = Float32Array.from(logits.subarray(0, n));
    this.probs = new Float32Array(n);
    this.size = n;
    this.sorted = true;
    return this;
  }

  /** Sorts by logit descending (ties: lower id first), fully. */
  sort(): void {
    if (this.sorted) {
      return;
    }
    const order = Array.from(this.ids.subarray(0, this.size).keys());
    const ids = this.ids;
    const logits = this.logits;
    order.sort((a, b) => logits[b] - logits[a] || ids[a] - ids[b]);
    this.#permute(order);
    this.sorted = true;
  }

  /** Keeps the k highest logits, sorted (a bounded selection: O(n log k)). */
  keepTop(k: number): void {
    if (k >= this.size) {
      this.sort();
      return;
    }
    const ids = this.ids;
    const logits = this.logits;
    // Min-heap of the best k seen so far, by (logit, -id).
    const heap: number[] = [];
    const worse = (a: number, b: number): boolean =>
      logits[a] < logits[b] || (logits[a] === logits[b] && ids[a] > ids[b]);
    const siftDown = (i: number): void => {
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && worse(heap[l], heap[m])) {
          m = l;
        }
        if (r < heap.length && worse(heap[r], heap[m])) {
          m = r;
        }
        if (m === i) {
          return;
        }
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    };
    // The logit of the worst kept candidate once k are kept: a logit below it is worse (its
    // test alone decides, as worse() would), so most of a 128k vocabulary costs one comparison.
    let floor = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < this.size; i++) {
      if (logits[i] < floor) {
        continue;
      }
      if (heap.length < k) {
        heap.push(i);
        for (let j = heap.length - 1; j > 0; ) {
          const p = (j - 1) >> 1;
          if (!worse(heap[j], heap[p])) {
            break;
          }
          [heap[j], heap[p]] = [heap[p], heap[j]];
          j = p;
        }
      } else if (worse(heap[0], i)) {
        heap[0] = i;
        siftDown(0);
      }
      if (heap.length === k) {
        floor = logits[heap[0]];
      }
    }
    heap.sort((a, b) => logits[b] - logits[a] || ids[a] - ids[b]);
    this.#permute(heap);
    this.size = heap.length;
    this.sorted = true;
  }

  #permute(order: number[]): void {
    const ids = new Int32Array(order.length);
    const logits = new Float32Array(order.length);
    const probs = new Float32Array(order.length);
    for (let i = 0; i < order.length; i++) {
      ids[i] = this.ids[order[i]];
      logits[i] = this.logits[order[i]];
      probs[i] = this.probs[order[i]];
    }
    this.ids = ids;
    this.logits = logits;
    this.probs = probs;
    this.size = order.length;
  }

  /** p_i = exp(l_i − l_max) / Σ exp(l_j − l_max), sorting first (llama.cpp's softmax). */
  softmax(): void {
    this.sort();
    const max = this.logits[0];
    let sum = 0;
    for (let i = 0; i < this.size; i++) {
      const p = Math.exp(this.logits[i] - max);
      this.probs[i] = p;
      sum += p;
    }
    for (let i = 0; i < this.size; i++) {
      this.probs[i] /= sum;
    }
  }

  /** Keeps the first `n` candidates (in current order). */
  truncate(n: number): void {
    this.size = Math.min(this.size, n);
  }

  /** Keeps the candidates at the given positions, in that order. */
  select(positions: number[], sorted: boolean): void {
    this.#permute(positions);
    this.sorted = sorted;
  }
}
