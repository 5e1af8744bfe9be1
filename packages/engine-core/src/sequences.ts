/**
 * The sequence bookkeeping every backend keeps on the JS side: ids, lengths, and the errors for
 * using a freed sequence or a disposed model, so that all backends answer misuse the same way.
 */
import { EngineError, EngineErrorCode } from "./errors";

/** Per-sequence state a backend keeps; `length` is the number of tokens in its KV cache. */
export interface SequenceLength {
  length: number;
}

export class SequenceTable<S extends SequenceLength> {
  readonly #states = new Map<number, S>();
  #next = 0;
  #disposed = false;

  get size(): number {
    return this.#states.size;
  }

  /** The live sequences' states. */
  values(): IterableIterator<S> {
    return this.#states.values();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Throws DISPOSED once `dispose` has run. */
  assertAlive(): void {
    if (this.#disposed) {
      throw new EngineError(EngineErrorCode.DISPOSED, "could not use the model - it was disposed.");
    }
  }

  /** The state of a live sequence; throws BAD_SEQUENCE for ids never created or freed. */
  get(id: number): S {
    this.assertAlive();
    const state = this.#states.get(id);
    if (state === undefined) {
      throw new EngineError(
        EngineErrorCode.BAD_SEQUENCE,
        `could not use sequence ${id} - it does not exist (never created, or freed).`,
      );
    }
    return state;
  }

  /** Registers a new sequence and returns its id (ids are never reused). */
  add(state: S): number {
    this.assertAlive();
    const id = this.#next++;
    this.#states.set(id, state);
    return id;
  }

  /** Sets a sequence's length to `length`, which must be within 0..its current length. */
  truncate(id: number, length: number): S {
    const state = this.get(id);
    if (!Number.isInteger(length) || length < 0 || length > state.length) {
      throw new EngineError(
        EngineErrorCode.BAD_OPTION,
        `could not truncate sequence ${id} to ${length} - it has ${state.length} tokens.`,
      );
    }
    state.length = length;
    return state;
  }

  delete(id: number): void {
    this.get(id);
    this.#states.delete(id);
  }

  /** Marks the table disposed and drops every sequence; false when it already was. */
  dispose(): boolean {
    if (this.#disposed) {
      return false;
    }
    this.#disposed = true;
    this.#states.clear();
    return true;
  }
}
