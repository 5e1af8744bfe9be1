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
  let bytes = await readExactly(source, 0, Math.min(size, FIRST_READ_BYTES), "the GGUF header");
  for (;;) {
    try {
      return parse(bytes, size, false, attach);
    } catch (error) {
      if (!(error instanceof NeedMoreBytes)) {
        throw error;
      }
      const length = Math.min(size, Math.max(bytes.length * 2, error.needed));
      const more = await readExactly(
        source,
        bytes.length,
        length - bytes.length,
        "the GGUF header",
      );
      const grown = new Uint8Array(length);
      grown.set(bytes);
      grown.set(more, bytes.length);
      bytes = grown;
    }
  }
}
