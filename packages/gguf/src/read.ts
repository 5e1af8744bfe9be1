import { type GgufFile, NeedMoreBytes, parse } from "./reader";
import { type ByteSource, checkSource, readExactly } from "./source";

/** Options for {@link readGgufFrom}. */
export interface ReadGgufOptions {
  /**
   * Also read all tensor data into memory so `file.tensorData()` returns views (default false:
   * only the header is read, and `file.readTensorData()` reads each tensor when asked).
   */
  readonly tensorData?: boolean;
}

// Header reads start with this many bytes and grow until the header fits; a real 2B-4T header
// (tokenizer arrays included) is ~7 MB, so it takes a few reads.
export const FIRST_READ_BYTES: number = 1 << 20;

/**
 * Reads and validates a GGUF file from any {@link ByteSource}: a `Blob`/`File`
 * ({@link blobSource}), bytes in memory ({@link bytesSource}), an HTTP server with range requests
 * ({@link openHttpSource}) or, in Node, a file ({@link openFileSource}).
 *
 * Only the header is read (a few MB even for multi-GB models, in growing reads that never read
 * a byte twice); tensors are read one at a time with `file.readTensorData(name)`, from the same
 * source, so the caller keeps the source open (and closes it) while tensors are read.
 *
 * @example
 * const file = await readGgufFrom(blobSource(pickedFile));
 * console.log(file.metadata.getString("general.architecture"), file.tensors.length);
 * const norm = await file.readTensorData("output_norm.weight");
 */
export function readGgufFrom(source: ByteSource, options: ReadGgufOptions = {}): Promise<GgufFile> {
  return readGgufWith(source, options, source);
}

/**
 * @internal {@link readGgufFrom}, with the file keeping `attach` (not `source`) for later tensor
 * reads: `readGgufFile(path)` closes its descriptor and attaches a source that reopens the path.
 */
export async function readGgufWith(
  source: ByteSource,
  options: ReadGgufOptions,
  attach: ByteSource,
): Promise<GgufFile> {
  checkSource(source);
  const size = source.size;
  if (options.tensorData === true) {
    return parse(await readExactly(source, 0, size, "the whole file"), size, true, attach);
  }
  const header = new HeaderBuffer(size);
  try {
    let length = Math.min(size, FIRST_READ_BYTES);
    header.grow(length).set(await readExactly(source, 0, length, "the GGUF header"));
    for (;;) {
      try {
        return parse(header.bytes, size, false, attach);
      } catch (error) {
        if (!(error instanceof NeedMoreBytes)) {
          throw error;
        }
        const had = length;
        length = nextHeaderLength(had, error.needed, size);
        const more = await readExactly(source, had, length - had, "the GGUF header");
        header.grow(length).set(more, had);
      }
    }
  } finally {
    header.release(); // parse copies what it keeps: the bytes are garbage from here on
  }
}

/** The next header read: double, or up to what the parser needs, within the file. */
export function nextHeaderLength(had: number, needed: number, size: number): number {
  return Math.min(size, Math.max(had * 2, needed));
}

/** The largest header buffer reserved as one resizable ArrayBuffer (address space, not memory). */
const MAX_RESIZABLE_HEADER = 1 << 30;

/**
 * The header's bytes while it is parsed, in a resizable ArrayBuffer where the runtime has one
 * (Node 20, current browsers): it grows in place and `release()` returns its memory at once.
 * Plain buffers grown by copying left every smaller copy, ~20 MB for a 2B-4T header, as
 * garbage that no GC collects before the model's weights are loaded, which is when memory
 * peaks. Falls back to copying where resizable buffers are missing or too small.
 */
export class HeaderBuffer {
  #resizable: ArrayBuffer | undefined;
  #bytes = new Uint8Array(0);

  constructor(fileSize: number) {
    try {
      const buffer = new ArrayBuffer(0, {
        maxByteLength: Math.min(fileSize, MAX_RESIZABLE_HEADER),
      });
      this.#resizable = buffer.resizable ? buffer : undefined;
    } catch {
      this.#resizable = undefined; // a runtime without resizable buffers, or too little space
    }
  }

  get bytes(): Uint8Array {
    return this.#bytes;
  }

  /** Grows to `length` bytes, keeping the bytes already there; returns the whole buffer. */
  grow(length: number): Uint8Array {
    const resizable = this.#resizable;
    if (resizable !== undefined && length <= resizable.maxByteLength) {
      resizable.resize(length);
      this.#bytes = new Uint8Array(resizable, 0, length);
    } else {
      const grown = new Uint8Array(length);
      grown.set(this.#bytes);
      this.#resizable?.resize(0);
      this.#resizable = undefined;
      this.#bytes = grown;
    }
    return this.#bytes;
  }

  /** Gives the memory back (resizable buffers) and forgets the bytes. */
  release(): void {
    this.#resizable?.resize(0);
    this.#bytes = new Uint8Array(0);
  }
}
