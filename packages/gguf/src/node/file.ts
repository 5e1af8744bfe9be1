import * as fs from "node:fs";
import { GgufError, GgufErrorCode } from "./errors";
import { type GgufFile, NeedMoreBytes, parse } from "./reader";

/** Options for {@link readGgufFile}. */
export interface ReadGgufFileOptions {
  /**
   * Also read all tensor data into memory so `file.tensorData()` returns views
   * (default false: only the header and metadata are read, however large the file).
   */
  readonly tensorData?: boolean;
}

// Header reads start with this many bytes and double until the header fits; a real 2B-4T
// header (tokenizer arrays included) is ~7 MB, so it takes a few reads.
const FIRST_READ_BYTES = 1 << 20;

/**
 * Reads and validates a GGUF file from disk.
 *
 * By default only the header is read (a few MB even for multi-GB models); pass
 * `{ tensorData: true }` to load the whole file and get zero-copy tensor views.
 *
 * @example
 * const file = await readGgufFile("model.gguf");
 * for (const t of file.tensors) console.log(t.name, t.type.name, t.shape);
 */
export async function readGgufFile(
  path: string,
  options: ReadGgufFileOptions = {},
): Promise<GgufFile> {
  try {
    return await readAsync(path, options);
  } catch (error) {
    throw error instanceof GgufError ? error : ioError(path, error);
  }
}

async function readAsync(path: string, options: ReadGgufFileOptions): Promise<GgufFile> {
  const handle = await fs.promises.open(path, "r");
  try {
    const { size } = await handle.stat();
    if (options.tensorData) {
      const bytes = new Uint8Array(size);
      await readFully(
        path,
        size,
        (buf, pos) => handle.read(buf, 0, buf.length, pos).then((r) => r.bytesRead),
        bytes,
      );
      return parse(bytes, size, true);
    }
    let length = Math.min(size, FIRST_READ_BYTES);
    for (;;) {
      const bytes = new Uint8Array(length);
      await readFully(
        path,
        length,
        (buf, pos) => handle.read(buf, 0, buf.length, pos).then((r) => r.bytesRead),
        bytes,
      );
      try {
        return parse(bytes, size, false);
      } catch (error) {
        if (!(error instanceof NeedMoreBytes)) {
          throw error;
        }
        length = Math.min(size, Math.max(length * 2, error.needed));
      }
    }
  } finally {
    await handle.close();
  }
}

/** Synchronous {@link readGgufFile}, for CLIs and tests. */
export function readGgufFileSync(path: string, options: ReadGgufFileOptions = {}): GgufFile {
  try {
    return readSync(path, options);
  } catch (error) {
    throw error instanceof GgufError ? error : ioError(path, error);
  }
}

function readSync(path: string, options: ReadGgufFileOptions): GgufFile {
  const fd = fs.openSync(path, "r");
  try {
    const { size } = fs.fstatSync(fd);
    let length = options.tensorData ? size : Math.min(size, FIRST_READ_BYTES);
    for (;;) {
      const bytes = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, bytes, done, length - done, done);
        if (n === 0) {
          throw shrunk(path, done, length);
        }
        done += n;
      }
      try {
        return parse(bytes, size, options.tensorData === true);
      } catch (error) {
        if (!(error instanceof NeedMoreBytes)) {
          throw error;
        }
        length = Math.min(size, Math.max(length * 2, error.needed));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function readFully(
  path: string,
  length: number,
  read: (buf: Uint8Array, position: number) => Promise<number>,
  into: Uint8Array,
): Promise<void> {
  // Read in chunks: a single read is capped at 2 GiB by the OS and Node.
  const chunk = 64 << 20;
  let done = 0;
  while (done < length) {
    const n = await read(into.subarray(done, Math.min(length, done + chunk)), done);
    if (n === 0) {
      throw shrunk(path, done, length);
    }
    done += n;
  }
}

function shrunk(path: string, got: number, wanted: number): GgufError {
  return new GgufError(
    GgufErrorCode.IO,
    `could not read "${path}" - the file shrank while reading (got ${got} of ${wanted} bytes).`,
  );
}

function ioError(path: string, error: unknown): GgufError {
  const code = (error as { code?: string }).code;
  const reason =
    code === "ENOENT"
      ? "no such file"
      : code === "EACCES"
        ? "permission denied"
        : code === "EISDIR"
          ? "it is a directory"
          : String((error as Error).message ?? error);
  return new GgufError(GgufErrorCode.IO, `could not open "${path}" - ${reason}.`, { cause: error });
}
