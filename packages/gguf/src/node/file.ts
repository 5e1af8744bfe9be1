/** Node only: reading GGUF files by path (the browser build has stubs that throw). */
import * as fs from "node:fs";
import { GgufError } from "../errors";
import { FIRST_READ_BYTES, type ReadGgufOptions, readGgufWith } from "../read";
import { type GgufFile, NeedMoreBytes, parse } from "../reader";
import { ioError, openFileSource, reopeningFileSource, shrunk } from "./file-source";

/** Options for {@link readGgufFile}. */
export interface ReadGgufFileOptions extends ReadGgufOptions {}

/**
 * Reads and validates a GGUF file from disk.
 *
 * By default only the header is read (a few MB even for multi-GB models) and no descriptor is
 * kept open: `file.readTensorData(name)` reopens the file for each tensor. Pass
 * `{ tensorData: true }` to load the whole file and get zero-copy views from `file.tensorData()`.
 *
 * @example
 * const file = await readGgufFile("model.gguf");
 * for (const t of file.tensors) console.log(t.name, t.type.name, t.shape);
 */
export async function readGgufFile(
  path: string,
  options: ReadGgufFileOptions = {},
): Promise<GgufFile> {
  const source = await openFileSource(path);
  try {
    // The descriptor is closed below, so the file keeps a source that reopens the path.
    return await readGgufWith(source, options, reopeningFileSource(path, source.size));
  } catch (error) {
    throw ioError(path, error);
  } finally {
    await source.close();
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
    const source = reopeningFileSource(path, size);
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
        return parse(bytes, size, options.tensorData === true, source);
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
