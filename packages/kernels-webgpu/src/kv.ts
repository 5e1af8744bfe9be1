/**
 * The KV cache's page bookkeeping, on the host: the cache is a pool of pages of KV_PAGE tokens
 * (one pool buffer per layer for keys, one for values); each sequence owns a list of pages.
 * Forks share pages (reference counts) and copy a shared page only when one of them writes into
 * it, so forking a long prompt costs no copy until the sequences diverge in a page.
 */
import { EngineError, EngineErrorCode } from "@bitnet-ts/engine-core";
import { KV_PAGE } from "./wgsl";

/** A page to copy before the step writes into it: `from` → `to`, every layer. */
export interface PageCopy {
  readonly from: number;
  readonly to: number;
}

export class KvPages {
  readonly pageCount: number;
  readonly #refs: Int32Array;
  readonly #free: number[] = [];
  readonly #tables = new Map<number, number[]>();

  constructor(pageCount: number) {
    this.pageCount = pageCount;
    this.#refs = new Int32Array(pageCount);
    for (let p = pageCount - 1; p >= 0; p--) {
      this.#free.push(p);
    }
  }

  get freePages(): number {
    return this.#free.length;
  }

  get usedPages(): number {
    return this.pageCount - this.#free.length;
  }

  create(sequence: number): void {
    this.#tables.set(sequence, []);
  }

  fork(from: number, to: number): void {
    const pages = [...this.#table(from)];
    for (const p of pages) {
      this.#refs[p]!++;
    }
    this.#tables.set(to, pages);
  }

  truncate(sequence: number, length: number): void {
    const pages = this.#table(sequence);
    const keep = Math.ceil(length / KV_PAGE);
    for (const p of pages.splice(keep)) {
      this.#release(p);
    }
  }

  free(sequence: number): void {
    for (const p of this.#table(sequence)) {
      this.#release(p);
    }
    this.#tables.delete(sequence);
  }

  pages(sequence: number): readonly number[] {
    return this.#table(sequence);
  }

  /**
   * Makes positions [start, end) of each run's sequence writable: new pages where the sequence
   * is too short, private copies of shared pages it writes into. Checks first that the pool has
   * enough free pages for the whole step, so a step that cannot fit changes nothing.
   */
  prepare(runs: readonly { sequence: number; start: number; end: number }[]): PageCopy[] {
    let needed = 0;
    for (const { sequence, start, end } of runs) {
      const pages = this.#table(sequence);
      for (let j = Math.floor(start / KV_PAGE); j < Math.ceil(end / KV_PAGE); j++) {
        if (j >= pages.length || this.#refs[pages[j]!]! > 1) {
          needed++;
        }
      }
    }
    if (needed > this.#free.length) {
      throw new EngineError(
        EngineErrorCode.OUT_OF_MEMORY,
        `could not run the step - its KV cache needs ${needed} more pages of ${KV_PAGE} tokens and ${this.#free.length} of ${this.pageCount} are free.\nFree or truncate sequences, or load the model with a larger KV budget.`,
      );
    }
    const copies: PageCopy[] = [];
    for (const { sequence, start, end } of runs) {
      const pages = this.#table(sequence);
      for (let j = Math.floor(start / KV_PAGE); j < Math.ceil(end / KV_PAGE); j++) {
        if (j >= pages.length) {
          pages.push(this.#take());
        } else if (this.#refs[pages[j]!]! > 1) {
          const to = this.#take();
          copies.push({ from: pages[j]!, to });
          this.#refs[pages[j]!]!--;
          pages[j] = to;
        }
      }
    }
    return copies;
  }

  #take(): number {
    const p = this.#free.pop()!;
    this.#refs[p] = 1;
    return p;
  }

  #release(page: number): void {
    if (--this.#refs[page]! === 0) {
      this.#free.push(page);
    }
  }

  #table(sequence: number): number[] {
    const pages = this.#tables.get(sequence);
    if (pages === undefined) {
      throw new EngineError(
        EngineErrorCode.BAD_SEQUENCE,
        `could not use sequence ${sequence} - it has no KV pages.`,
      );
    }
    return pages;
  }
}
