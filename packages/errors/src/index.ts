// Marks bitnet-ts errors on the prototype so `isBitnetError` also recognises errors created by
// another copy of this package (two versions installed side by side).
const BRAND = Symbol.for("bitnet-ts.error");

/**
 * The base of every error bitnet-ts throws on purpose.
 *
 * Each subclass carries a stable machine-readable `code` (e.g. `GGUF_BAD_MAGIC`) so callers
 * can branch on it without parsing messages, and keeps the underlying `cause`.
 *
 * @example
 * try {
 *   await readGgufFile("model.gguf");
 * } catch (error) {
 *   if (isBitnetError(error) && error.code === "GGUF_BAD_MAGIC") console.error(error.message);
 * }
 */
export class BitnetError extends Error {
  /** Stable identifier of the failure, in SCREAMING_SNAKE_CASE, prefixed by the package area. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  /** A plain object for logs and JSON output (message, code, name and any own fields). */
  toJSON(): Record<string, unknown> {
    const json: Record<string, unknown> = {
      name: this.name,
      code: this.code,
      message: this.message,
    };
    for (const [key, value] of Object.entries(this)) {
      if (key !== "code" && value !== undefined && typeof value !== "function") {
        json[key] = typeof value === "bigint" ? value.toString() : value;
      }
    }
    return json;
  }
}

Object.defineProperty(BitnetError.prototype, BRAND, { value: true });

/** True for any error thrown by a bitnet-ts package (works across duplicated package copies). */
export function isBitnetError(value: unknown): value is BitnetError {
  return (
    value instanceof BitnetError ||
    (value instanceof Error && (value as unknown as Record<symbol, unknown>)[BRAND] === true)
  );
}
