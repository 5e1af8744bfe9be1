/**
 * A binary min-heap ordered by (primary, secondary) numeric keys, storing an integer payload.
 * Used by the BPE and SentencePiece merge loops (O(n log n) on long words, no allocation per push).
 */
export class PairHeap {
  #primary: number[] = [];
  #secondary: number[] = [];
  #payload: number[] = [];

  get size(): number {
    return this.#payload.length;
  }

  clear(): void {
    this.#primary.length = 0;
    this.#secondary.length = 0;
    this.#payload.length = 0;
  }

  push(primary: number, secondary: number, payload: number): void {
    const p = this.#primary;
    const s = this.#secondary;
    const v = this.#payload;
    let i = v.length;
    p.push(primary);
    s.push(secondary);
    v.push(payload);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (p[parent]! < primary || (p[parent] === primary && s[parent]! <= secondary)) {
        break;
      }
      p[i] = p[parent]!;
      s[i] = s[parent]!;
      v[i] = v[parent]!;
      i = parent;
    }
    p[i] = primary;
    s[i] = secondary;
    v[i] = payload;
  }

  /** Removes the smallest entry and returns its payload (the heap must not be empty). */
  pop(): number {
    const p = this.#primary;
    const s = this.#secondary;
    const v = this.#payload;
    const top = v[0]!;
    const lastP = p.pop()!;
    const lastS = s.pop()!;
    const lastV = v.pop()!;
    const n = v.length;
    if (n === 0) {
      return top;
    }
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) {
        break;
      }
      const r = l + 1;
      let c = l;
      if (r < n && (p[r]! < p[l]! || (p[r] === p[l] && s[r]! < s[l]!))) {
        c = r;
      }
      if (lastP < p[c]! || (lastP === p[c] && lastS <= s[c]!)) {
        break;
      }
      p[i] = p[c]!;
      s[i] = s[c]!;
      v[i] = v[c]!;
      i = c;
    }
    p[i] = lastP;
    s[i] = lastS;
    v[i] = lastV;
    return top;
  }
}
