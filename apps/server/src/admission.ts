/**
 * Admission control on the model's capacity, not on a slot count. A request is admitted when
 *
 * - fewer than `parallel` requests generate (a cap, like llama-server's -np),
 * - the KV cache it can need, min(prompt + max_tokens, context) × bytes per token, fits in the
 *   model's KV budget next to the reservations of the requests already admitted, and
 * - the backend can hold one more sequence (when it limits sequences at all).
 *
 * Otherwise it waits in a bounded queue, in arrival order (a large request at the head is not
 * overtaken by smaller ones behind it, so it cannot starve); beyond `maxQueue` it is refused at
 * once with 503 and Retry-After. A request that could not fit even alone is refused with a 400
 * that gives the numbers. Pure logic: the capacity comes from a function.
 */
import type { Capacity } from "@bitnet-ts/engine-core";
import { ApiError, shuttingDown } from "./errors";

/** What admission reads of the model's capacity. */
export type KvCapacity = Pick<
  Capacity,
  "kvBytesPerToken" | "kvBudgetBytes" | "maxSequences" | "liveSequences" | "contextLength"
>;

export interface AdmissionOptions {
  /** Requests that generate at once at most (--parallel). */
  readonly parallel: number;
  /** Requests that may wait before new ones get 503. */
  readonly maxQueue: number;
  /** The model's capacity now; read at every decision. */
  readonly capacity: () => KvCapacity;
  /**
   * While requests wait and none runs (so no release will come), how often to read the capacity
   * again, in ms (default 20): sequences held outside admission may be freed meanwhile.
   */
  readonly recheckMs?: number;
}

interface Waiter {
  readonly bytes: number;
  readonly resolve: (release: () => void) => void;
  readonly reject: (error: unknown) => void;
}

export class Admission {
  readonly parallel: number;
  readonly maxQueue: number;
  readonly #capacity: () => KvCapacity;
  readonly #recheckMs: number;
  #busy = 0;
  #reserved = 0;
  readonly #queue: Waiter[] = [];
  #closed = false;
  #recheck: ReturnType<typeof setTimeout> | undefined;

  constructor(options: AdmissionOptions) {
    this.parallel = options.parallel;
    this.maxQueue = options.maxQueue;
    this.#capacity = options.capacity;
    this.#recheckMs = options.recheckMs ?? 20;
  }

  /** Requests generating now. */
  get busy(): number {
    return this.#busy;
  }

  /** Requests waiting. */
  get queued(): number {
    return this.#queue.length;
  }

  /** KV bytes reserved by the admitted requests. */
  get reservedBytes(): number {
    return this.#reserved;
  }

  /** KV bytes a request of `tokens` tokens (prompt + max_tokens) can need. */
  static kvBytes(tokens: number, capacity: KvCapacity): number {
    return Math.min(tokens, capacity.contextLength) * capacity.kvBytesPerToken;
  }

  /**
   * Waits until a request of `tokens` tokens (prompt + max_tokens) may generate; the returned
   * function ends its admission (once) and lets the next one in. Rejects if `signal` aborts first.
   */
  acquire(tokens: number, signal: AbortSignal): Promise<() => void> {
    if (this.#closed) {
      return Promise.reject(shuttingDown());
    }
    const capacity = this.#capacity();
    const bytes = Admission.kvBytes(tokens, capacity);
    if (bytes > capacity.kvBudgetBytes) {
      return Promise.reject(tooLarge(tokens, bytes, capacity));
    }
    if (this.#queue.length === 0 && this.#fits(bytes, capacity)) {
      return Promise.resolve(this.#admit(bytes));
    }
    if (this.#queue.length >= this.maxQueue) {
      return Promise.reject(
        new ApiError(
          503,
          "unavailable_error",
          `the server is busy: ${this.#busy} requests generating (${this.#reserved} of ${capacity.kvBudgetBytes} KV cache bytes reserved) and ${this.#queue.length} queued; retry shortly`,
          { code: "queue_full", headers: { "retry-after": "1" } },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { bytes, resolve, reject };
      this.#queue.push(waiter);
      this.#scheduleRecheck();
      signal.addEventListener(
        "abort",
        () => {
          const i = this.#queue.indexOf(waiter);
          if (i >= 0) {
            this.#queue.splice(i, 1);
            reject(signal.reason);
            this.#drain(); // the head may have changed
          }
        },
        { once: true },
      );
    });
  }

  /** Refuses new requests and everything still queued. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#recheck);
    for (const w of this.#queue.splice(0)) {
      w.reject(shuttingDown());
    }
  }

  #fits(bytes: number, capacity: KvCapacity): boolean {
    if (this.#busy >= this.parallel || this.#reserved + bytes > capacity.kvBudgetBytes) {
      return false;
    }
    // Admitted requests may not have created their sequence yet; sequences held by others count.
    const sequences = Math.max(this.#busy, capacity.liveSequences);
    return capacity.maxSequences === undefined || sequences < capacity.maxSequences;
  }

  #admit(bytes: number): () => void {
    this.#busy++;
    this.#reserved += bytes;
    let released = false;
    return () => {
      if (released) {
        return;
      }
      released = true;
      this.#busy--;
      this.#reserved -= bytes;
      this.#drain();
    };
  }

  /** Admits waiters from the head while they fit. */
  #drain(): void {
    clearTimeout(this.#recheck);
    this.#recheck = undefined;
    while (this.#queue.length > 0 && !this.#closed) {
      const head = this.#queue[0]!;
      if (!this.#fits(head.bytes, this.#capacity())) {
        break;
      }
      this.#queue.shift();
      head.resolve(this.#admit(head.bytes));
    }
    this.#scheduleRecheck();
  }

  /** With requests waiting and none running, no release will come: read the capacity again soon. */
  #scheduleRecheck(): void {
    if (
      this.#recheck === undefined &&
      this.#queue.length > 0 &&
      this.#busy === 0 &&
      !this.#closed
    ) {
      this.#recheck = setTimeout(() => this.#drain(), this.#recheckMs);
      this.#recheck.unref?.();
    }
  }
}

function tooLarge(tokens: number, bytes: number, capacity: KvCapacity): ApiError {
  const n = Math.min(tokens, capacity.contextLength);
  return new ApiError(
    400,
    "invalid_request_error",
    `the request can need ${bytes} bytes of KV cache (${n} tokens of prompt and max_tokens × ${capacity.kvBytesPerToken} bytes) but the model's KV budget is ${capacity.kvBudgetBytes} bytes (${Math.floor(capacity.kvBudgetBytes / capacity.kvBytesPerToken)} tokens): lower max_tokens or shorten the prompt`,
    {
      param: "max_tokens",
      code: "kv_budget_exceeded",
      extra: {
        n_tokens: n,
        kv_bytes_needed: bytes,
        kv_bytes_per_token: capacity.kvBytesPerToken,
        kv_budget_bytes: capacity.kvBudgetBytes,
      },
    },
  );
}
