import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ApiError } from "./errors";
import { hashKey, parseTenants, type TenantConfig, Tenants, TenantsFileError } from "./tenants";

function config(name: string, key: string, limits: TenantConfig["limits"] = {}): TenantConfig {
  return { name, keyDigest: Buffer.from(hashKey(key), "hex"), limits };
}

/** A clock the test moves by hand (ms). */
function clock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function refusal(action: () => unknown): ApiError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error("expected a 429");
}

describe("tenants file", () => {
  const file = "tenants.json";
  const good = (tenants: unknown[]) => JSON.stringify({ tenants });

  it("reads names, digests and limits", () => {
    const parsed = parseTenants(
      good([
        {
          name: "team-a",
          key_sha256: hashKey("sk-a").toUpperCase(),
          limits: { requests_per_minute: 60, tokens_per_minute: 1000, concurrent_streams: 2 },
        },
        { name: "team.b_2", key_sha256: hashKey("sk-b") },
      ]),
      file,
    );
    expect(parsed.map((t) => t.name)).toEqual(["team-a", "team.b_2"]);
    expect(parsed[0]!.keyDigest.toString("hex")).toBe(hashKey("sk-a"));
    expect(parsed[0]!.limits).toEqual({
      requestsPerMinute: 60,
      tokensPerMinute: 1000,
      concurrentStreams: 2,
    });
    expect(parsed[1]!.limits).toEqual({});
  });

  it.each([
    ["not JSON", "{tenants:", /not JSON/],
    ["no tenants array", "{}", /tenants/],
    ["a key in clear", good([{ name: "a", key_sha256: "sk-a" }]), /tenants\.0\.key_sha256: 64 hex/],
    ["an unknown field", good([{ name: "a", key_sha256: hashKey("k"), key: "k" }]), /tenants\.0/],
    ["a bad name", good([{ name: "a b", key_sha256: hashKey("k") }]), /tenants\.0\.name/],
    [
      "a zero limit",
      good([{ name: "a", key_sha256: hashKey("k"), limits: { requests_per_minute: 0 } }]),
      /requests_per_minute/,
    ],
    [
      "a name used twice",
      good([
        { name: "a", key_sha256: hashKey("k1") },
        { name: "a", key_sha256: hashKey("k2") },
      ]),
      /"a" is used twice/,
    ],
    [
      "one key for two tenants",
      good([
        { name: "a", key_sha256: hashKey("k") },
        { name: "b", key_sha256: hashKey("k").toUpperCase() },
      ]),
      /same key is given to two tenants/,
    ],
  ])("refuses %s with a message naming the file and field", (_what, text, message) => {
    expect(() => parseTenants(text, file)).toThrow(TenantsFileError);
    expect(() => parseTenants(text, file)).toThrow(message);
    expect(() => parseTenants(text, file)).toThrow(/tenants\.json/);
  });

  it("never throws anything but TenantsFileError on arbitrary input (fuzz)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        try {
          parseTenants(text, file);
        } catch (error) {
          expect(error).toBeInstanceOf(TenantsFileError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("tenant limits", () => {
  it("identifies keys by digest and nothing else", () => {
    const tenants = new Tenants([config("a", "sk-a"), config("b", "sk-b")]);
    expect(tenants.identify("sk-a")?.name).toBe("a");
    expect(tenants.identify("sk-b")?.name).toBe("b");
    expect(tenants.identify("sk-c")).toBeUndefined();
    expect(tenants.identify(hashKey("sk-a"))).toBeUndefined();
    expect(tenants.identify("")).toBeUndefined();
  });

  it("requests per minute: a burst of the allowance, then 429 with the seconds until one more", () => {
    const c = clock();
    const tenant = new Tenants([config("a", "k", { requestsPerMinute: 2 })], c.now).get("a")!;
    tenant.start(10).end(0);
    tenant.start(10).end(0);
    const refused = refusal(() => tenant.start(10));
    expect(refused.status).toBe(429);
    expect(refused.code).toBe("rate_limit_exceeded");
    expect(refused.extra["limit"]).toBe("requests_per_minute");
    expect(refused.headers["retry-after"]).toBe("30"); // one request refills in 30 s
    c.advance(29_000);
    expect(refusal(() => tenant.start(10)).headers["retry-after"]).toBe("1");
    c.advance(1_000);
    tenant.start(10).end(0);
    // A quiet hour does not bank more than a minute's allowance.
    c.advance(3_600_000);
    tenant.start(1).end(0);
    tenant.start(1).end(0);
    expect(refusal(() => tenant.start(1)).extra["limit"]).toBe("requests_per_minute");
  });

  it("tokens per minute: the prompt up front, the reply at the end, a debt paid by waiting", () => {
    const c = clock();
    const tenant = new Tenants([config("a", "k", { tokensPerMinute: 600 })], c.now).get("a")!;
    const lease = tenant.start(100); // 500 left
    lease.end(700); // -200: in debt
    lease.end(700); // ending twice charges once
    const refused = refusal(() => tenant.start(50));
    expect(refused.extra["limit"]).toBe("tokens_per_minute");
    expect(refused.headers["retry-after"]).toBe("25"); // 250 tokens at 10 per second
    c.advance(25_000);
    tenant.start(50).end(0);
    // A prompt larger than a whole minute's allowance can never pass: no Retry-After.
    const never = refusal(() => tenant.start(601));
    expect(never.headers["retry-after"]).toBeUndefined();
    expect(never.message).toContain("can never fit");
  });

  it("concurrent streams: running requests count until they end", () => {
    const tenant = new Tenants([config("a", "k", { concurrentStreams: 2 })]).get("a")!;
    const one = tenant.start(1);
    const two = tenant.start(1);
    expect(tenant.active).toBe(2);
    const refused = refusal(() => tenant.start(1));
    expect(refused.extra["limit"]).toBe("concurrent_streams");
    expect(refused.headers["retry-after"]).toBe("1");
    one.end(5);
    const three = tenant.start(1);
    two.end(5);
    three.end(5);
    expect(tenant.active).toBe(0);
  });

  it("a reload keeps the state of tenants that stay and drops the keys of those that go", () => {
    const c = clock();
    const tenants = new Tenants(
      [config("a", "sk-a", { requestsPerMinute: 1, concurrentStreams: 1 }), config("b", "sk-b")],
      c.now,
    );
    const a = tenants.get("a")!;
    const running = a.start(1);
    tenants.replace([
      config("a", "sk-a2", { requestsPerMinute: 1, concurrentStreams: 1 }),
      config("c", "sk-c"),
    ]);
    expect(tenants.identify("sk-a")).toBeUndefined(); // its key changed
    expect(tenants.identify("sk-a2")).toBe(a); // same tenant, same state
    expect(tenants.identify("sk-b")).toBeUndefined(); // removed
    expect(tenants.identify("sk-c")?.name).toBe("c"); // added
    expect(a.active).toBe(1); // the running request was not dropped
    expect(refusal(() => a.start(1)).extra["limit"]).toBe("concurrent_streams");
    running.end(1);
    // The minute's single request is still spent: a reload is no way around a quota.
    expect(refusal(() => a.start(1)).extra["limit"]).toBe("requests_per_minute");
    // A changed limit starts a fresh bucket at the new allowance.
    tenants.replace([config("a", "sk-a2", { requestsPerMinute: 5 })]);
    a.start(1).end(0);
  });
});
