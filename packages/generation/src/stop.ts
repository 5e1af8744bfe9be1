/**
 * Stop strings: text is held back while it could still be the start of a stop string, and cut
 * at the first full match.
 */
export class StopMatcher {
  readonly #stops: readonly string[];
  #pending = "";

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /**
   * Adds generated text. Returns the text that is safe to emit now and whether a stop string
   * was found (in which case the text before it is returned and generation should end).
   */
  push(text: string): { emit: string; stopped: boolean } {
    const all = this.#pending + text;
    let first = -1;
    for (const stop of this.#stops) {
      const at = all.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) {
        first = at;
      }
    }
    if (first >= 0) {
      this.#pending = "";
      return { emit: all.slice(0, first), stopped: true };
    }
    // Hold back the longest suffix that is a proper prefix of some stop string.
    let hold = 0;
    for (const stop of this.#stops) {
      for (let n = Math.min(stop.length - 1, all.length); n > hold; n--) {
        if (all.endsWith(stop.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    this.#pending = all.slice(all.length - hold);
    return { emit: all.slice(0, all.length - hold), stopped: false };
  }

  /** The held-back text, at the end of generation. */
  flush(): string {
    const rest = this.#pending;
    this.#pending = "";
    return rest;
  }
}
