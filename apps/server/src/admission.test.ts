import { describe, expect, it } from "vitest";
import { Admission, type KvCapacity } from "./admission";
import { ApiError } from "./errors";

/** A fake model: 10 bytes of KV per token, a budget of `budgetTokens` tokens, context 100. */
function fake(budgetTokens: number, extra: Partial<KvCapacity> = {}) {
  const capacity: { -readonly [K in keyof KvCapacity]: KvCapacity[K] } = {
    kvBytesPerToken: 10,
    kvBudgetBytes: budgetTokens * 10,
    maxSequences: undefined,
    liveSequences: 0,
    contextLength: 100,
    ...extra,
  };
  return capacity;
}

function admission(capacity: KvCapacity, parallel = 4, maxQueue = 4): Admission {
  return new Admission({ parallel, maxQueue, capacity: () => capacity, recheckMs: 1 });
}

const never = new AbortController().signal;

/** Whether a promise has settled (after the microtasks queued so far). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((r) => setTimeout(r, 0));
  return done;
}

describe("admission by KV capacity", () => {
  it("admits while reservations fit the budget, queues the rest, lets it in on release", async () => {
    const a = admission(fake(100));
    const first = await a.acquire(60, never);
    expect(a.reservedBytes).toBe(600);
    const second = a.acquire(60, never); // 60 + 60 > 100 tokens
    expect(await settled(second)).toBe(false);
    expect(a.busy).toBe(1);
    expect(a.queued).toBe(1);
    first();
    const release = await second;
    expect(a.busy).toBe(1);
    expect(a.reservedBytes).toBe(600);
    release();
    release(); // once only
    expect(a.busy).toBe(0);
    expect(a.reservedBytes).toBe(0);
  });

  it("reserves min(tokens, context) × bytes per token", async () => {
    const a = admission(fake(150));
    await a.acquire(1000, never); // capped at the context: 100 tokens
    expect(a.reservedBytes).toBe(1000);
    expect(Admission.kvBytes(1000, fake(150))).toBe(1000);
    expect(Admission.kvBytes(7, fake(150))).toBe(70);
  });

  it("still caps the requests running at once at `parallel`", async () => {
    const a = admission(fake(1000), 2);
    await a.acquire(1, never);
    await a.acquire(1, never);
    const third = a.acquire(1, never);
    expect(await settled(third)).toBe(false);
    expect(a.queued).toBe(1);
  });

  it("respects the backend's sequence limit, counting sequences it holds for others", async () => {
    const capacity = fake(1000, { maxSequences: 2, liveSequences: 1 }); // one held elsewhere
    const a = admission(capacity);
    const first = await a.acquire(1, never);
    capacity.liveSequences = 2; // the first request's sequence too
    const second = a.acquire(1, never);
    expect(await settled(second)).toBe(false);
    capacity.liveSequences = 1; // the first request ends and frees its sequence
    first();
    await second;
    expect(a.busy).toBe(1);
  });

  it("rechecks a waiting request when nothing runs (sequences freed elsewhere)", async () => {
    const capacity = fake(1000, { maxSequences: 1, liveSequences: 1 });
    const a = admission(capacity);
    const waiting = a.acquire(1, never);
    expect(await settled(waiting)).toBe(false);
    capacity.liveSequences = 0;
    await new Promise((r) => setTimeout(r, 10));
    expect(await settled(waiting)).toBe(true);
  });

  it("keeps arrival order: a small request does not overtake a large one waiting", async () => {
    const a = admission(fake(100));
    const first = await a.acquire(50, never);
    const large = a.acquire(80, never);
    const small = a.acquire(10, never); // would fit now, but waits behind the large one
    expect(await settled(small)).toBe(false);
    first();
    const releaseLarge = await large;
    expect(await settled(small)).toBe(true); // 80 + 10 fit
    releaseLarge();
  });

  it("refuses a request that could never fit with a 400 that gives the numbers", async () => {
    const a = admission(fake(50));
    const error = await a.acquire(60, never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    const api = error as ApiError;
    expect(api.status).toBe(400);
    expect(api.code).toBe("kv_budget_exceeded");
    expect(api.extra).toMatchObject({ kv_bytes_needed: 600, kv_budget_bytes: 500, n_tokens: 60 });
    expect(api.message).toContain("600 bytes of KV cache");
    expect(api.message).toContain("KV budget is 500 bytes (50 tokens)");
  });

  it("answers 503 queue_full with Retry-After beyond the queue", async () => {
    const a = admission(fake(10), 4, 1);
    await a.acquire(10, never);
    void a.acquire(10, never).catch(() => {});
    const error = (await a.acquire(10, never).catch((e: unknown) => e)) as ApiError;
    expect(error.status).toBe(503);
    expect(error.code).toBe("queue_full");
    expect(error.headers["retry-after"]).toBe("1");
  });

  it("drops a waiter whose signal aborts and lets the next one in", async () => {
    const a = admission(fake(100));
    const first = await a.acquire(60, never);
    const abort = new AbortController();
    const gone = a.acquire(60, abort.signal);
    const next = a.acquire(30, never);
    abort.abort(new Error("client went away"));
    await expect(gone).rejects.toThrow("client went away");
    await next; // 60 + 30 fit once the head left
    expect(a.queued).toBe(0);
    first();
  });

  it("close() refuses what is queued and anything new", async () => {
    const a = admission(fake(10));
    await a.acquire(10, never);
    const queued = a.acquire(10, never);
    a.close();
    await expect(queued).rejects.toMatchObject({ status: 503, code: "shutting_down" });
    await expect(a.acquire(1, never)).rejects.toMatchObject({ code: "shutting_down" });
  });
});
