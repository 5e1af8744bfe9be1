import { describe, expect, it } from "vitest";
import { BitnetError, isBitnetError } from "./index";

class ExampleError extends BitnetError {
  readonly offset: number;
  constructor(offset: number) {
    super("EXAMPLE_FAILED", `could not read example - bad byte at offset ${offset}.`);
    this.offset = offset;
  }
}

describe("BitnetError", () => {
  it("keeps code, subclass name, cause and own fields", () => {
    const cause = new Error("root");
    const error = new BitnetError("SOME_CODE", "something failed", { cause });
    expect(error.code).toBe("SOME_CODE");
    expect(error.cause).toBe(cause);
    expect(error.name).toBe("BitnetError");
    const sub = new ExampleError(12);
    expect(sub.name).toBe("ExampleError");
    expect(sub).toBeInstanceOf(BitnetError);
    expect(sub.toJSON()).toEqual({
      name: "ExampleError",
      code: "EXAMPLE_FAILED",
      message: "could not read example - bad byte at offset 12.",
      offset: 12,
    });
  });

  it("recognises bitnet errors but not plain errors or system errors", () => {
    expect(isBitnetError(new ExampleError(1))).toBe(true);
    expect(isBitnetError(new Error("x"))).toBe(false);
    expect(isBitnetError("GGUF_BAD_MAGIC")).toBe(false);
    const enoent = Object.assign(new Error("no such file"), { code: "ENOENT" });
    expect(isBitnetError(enoent)).toBe(false);
  });
});
