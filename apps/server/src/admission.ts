/**
 * Admission control: at most `slots` requests generate at once (their sequences decode together
 * in each batched step); up to `maxQueue` more wait in arrival order; beyond that a request is
 * refused at once with 503 and Retry-After, so a burst never grows an unbounded backlog.
 */
import { ApiError } from "./errors";

interface Waiter {
  readonly resolve: (release: () => void) => void;
  readonly reject: (error: unknown) => void;
}

export class Admission {
  readonly slots: number;
  readonly maxQueue: number;
  #busy = 0;
  readonly #queue: Waiter[] = [];
  #closed = false;

  constructor(slots: number, maxQueue: number) {
    this.slots = slots;
    this.maxQueue = maxQueue;
  }

  get busy(): number {
    return this.#busy;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Waits for a slot; the returned function frees it (once). Rejects if `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (this.#closed) {
      return Promise.reject(
        new ApiError(503, "unavailable_error", "the server is shutting down", {
          code: "shutting_down",
        }),
      );
    }
    if (this.#busy < this.slots) {
      this.#busy++;
      return Promise.resolve(this.#releaser());
    }
    if (this.#queue.length >= this.maxQueue) {
      return Promise.reject(
        new ApiError(
          503,
          "unavailable_error",
          `the server is busy: ${this.slots} requests generating and ${this.#queue.length} queued; retry shortly`,
          {
            code: "queue_full",
            headers: { "retry-after": "1" },
          },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      this.#queue.push(waiter);
      signal.addEventListener(
        "abort",
        () => {
          const i = this.#queue.indexOf(waiter);
          if (i >= 0) {
            this.#queue.splice(i, 1);
            reject(signal.reason);
          }
        },
        { once: true },
      );
    });
  }

  /** Refuses new requests and everything still queued. */
  close(): void {
    this.#closed = true;
    for (const w of this.#queue.splice(0)) {
      w.reject(
        new ApiError(503, "unavailable_error", "the server is shutting down", {
          code: "shutting_down",
        }),
      );
    }
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) {
        return;
      }
      released = true;
      const next = this.#queue.shift();
      if (next !== undefined) {
        next.resolve(this.#releaser()); // the slot passes straight to the next request
      } else {
        this.#busy--;
      }
    };
  }
}
