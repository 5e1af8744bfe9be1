/**
 * The 32-bit Mersenne Twister (std::mt19937), the generator llama.cpp's samplers use. Same seed ⇒
 * same stream on every machine and run.
 */
export class Mt19937 {
  readonly #state = new Uint32Array(624);
  #index = 624;

  constructor(seed: number) {
    const s = this.#state;
    s[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = s[i - 1]! ^ (s[i - 1]! >>> 30);
      // 1812433253 * prev + i, in 32-bit arithmetic
      s[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  /** The next 32-bit output. */
  nextU32(): number {
    const s = this.#state;
    if (this.#index >= 624) {
      for (let i = 0; i < 624; i++) {
        const y = (s[i]! & 0x80000000) | (s[(i + 1) % 624]! & 0x7fffffff);
        let v = s[(i + 397) % 624]! ^ (y >>> 1);
        if (y & 1) {
          v ^= 0x9908b0df;
        }
        s[i] = v >>> 0;
      }
      this.#index = 0;
    }
    let y = s[this.#index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** A uniform double in [0, 1) with 53 random bits. */
  nextDouble(): number {
    const a = this.nextU32() >>> 5;
    const b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}
