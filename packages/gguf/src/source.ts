/**
 * Byte sources: random access to a file's bytes wherever they live (memory, a `Blob`/`File`, an
 * HTTP server, a file descriptor), so the reader can take the header first and each tensor later
 * without ever holding a 1.2 GB model in one ArrayBuffer. Everything here runs in browsers too;
 * the file-descriptor source lives in `node/file-source.ts`.
 */
import { GgufError, GgufErrorCode } from "./errors";

/**
 * Random access to the bytes of one file. Implement it to read GGUF from anywhere else (an
 * OPFS handle, IndexedDB, a custom cache): the reader only ever calls `read` with ranges inside
 * `size`.
 *
 * @example
 * const source: ByteSource = {
 *   size: bytes.length,
 *   read: async (offset, length) => bytes.subarray(offset, offset + length),
 * };
 * const file = await readGgufFrom(source);
 */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** What the bytes are (a path, a URL, a file name), for error messages. */
  readonly name?: string;
  /**
   * Exactly `length` bytes starting at `offset` (the caller keeps `offset + length <= size`).
   * The result may be a view of memory the source keeps: callers must not write to it.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases what the source holds (a file descriptor). Reads after `close` fail. */
  close?(): Promise<void>;
}

/** A readable name for a source in error messages. */
export function sourceName(source: ByteSource): string {
  return source.name === undefined ? "the byte source" : `"${source.name}"`;
}

/**
 * Reads `length` bytes at `offset` from a source, checking the range and the answer: a source
 * that returns fewer or more bytes than asked is reported, never silently padded or cut, and any
 * failure becomes a `GgufError` (code `GGUF_IO` unless the source threw a `GgufError` itself).
 */
export async function readExactly(
  source: ByteSource,
  offset: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > source.size
  ) {
    throw new GgufError(
      GgufErrorCode.IO,
      `could not read ${what} from ${sourceName(source)} - bytes ${offset}..${offset + length} are outside its ${source.size} bytes.`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await source.read(offset, length);
  } catch (error) {
    if (error instanceof GgufError) {
      throw error;
    }
    throw new GgufError(
      GgufErrorCode.IO,
      `could not read ${what} from ${sourceName(source)} - ${errorMessage(error)}.`,
      { cause: error },
    );
  }
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : String(bytes);
    throw new GgufError(
      GgufErrorCode.IO,
      `could not read ${what} from ${sourceName(source)} - asked for ${length} bytes at offset ${offset}, received ${got}.`,
    );
  }
  return bytes;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Checks what a custom source claims before anything is read from it. */
export function checkSource(source: ByteSource): void {
  if (!Number.isSafeInteger(source.size) || source.size < 0) {
    throw new GgufError(
      GgufErrorCode.IO,
      `could not read ${sourceName(source)} - its size ${String(source.size)} is not a non-negative integer.`,
    );
  }
}

/**
 * A source over bytes already in memory. Reads are views, not copies.
 *
 * @example
 * const file = await readGgufFrom(bytesSource(await response.arrayBuffer()));
 */
export function bytesSource(data: ArrayBuffer | Uint8Array, name?: string): ByteSource {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  return {
    size: bytes.length,
    ...(name === undefined ? {} : { name }),
    read: async (offset, length) => bytes.subarray(offset, offset + length),
  };
}

/**
 * A source over a `Blob` or `File` (a file the user picked or dropped, an OPFS file): each read
 * slices the blob, so only the bytes asked for are ever loaded.
 *
 * @example
 * input.onchange = async () => {
 *   const file = await readGgufFrom(blobSource(input.files[0]));
 *   console.log(file.metadata.getString("general.name"));
 * };
 */
export function blobSource(blob: Blob): ByteSource {
  const name = (blob as { name?: unknown }).name;
  return {
    size: blob.size,
    ...(typeof name === "string" && name !== "" ? { name } : {}),
    read: async (offset, length) =>
      new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
  };
}
