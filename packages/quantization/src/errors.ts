import { BitnetError } from "@bitnet-ts/errors";

/** A buffer or shape that does not fit the format it is used with. */
export class QuantizationError extends BitnetError {
  constructor(message: string) {
    super("QUANT_INVALID_INPUT", message);
  }
}

/** Throws unless `n` is a non-negative multiple of `block` (the format's block size). */
export function checkBlocks(format: string, n: number, block: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n % block !== 0) {
    throw new QuantizationError(
      `could not process ${format} data - ${n} elements is not a multiple of the ${format} block size ${block}.`,
    );
  }
}

/** Throws unless `bytes` has exactly `expected` bytes. */
export function checkBytes(format: string, bytes: Uint8Array, expected: number): void {
  if (bytes.length !== expected) {
    throw new QuantizationError(
      `could not decode ${format} data - expected ${expected} bytes for this element count.\nReceived ${bytes.length} bytes.`,
    );
  }
}
