/** Node only: reading GGUF files by path (the browser build has stubs that throw). */
import * as fs from "node:fs";
import { GgufError } from "../errors";
import {
  FIRST_READ_BYTES,
  HeaderBuffer,
  nextHeaderLength,
  type ReadGgufOptions,
  readGgufWith,
} from "../read";
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
    const fill = (bytes: Uint8Array, from: number): void => {
      for (let done = from; done < bytes.length; ) {
        const n = fs.readSync(fd, bytes, done, bytes.length - done, done);
        if (n === 0) {
          throw shrunk(path, done, bytes.length);
        }
        done += n;
      }
    };
    if (options.tensorData) {
      const bytes = new Uint8Array(size);
      fill(bytes, 0);
      return parse(bytes, size, true, source);
    }
    const header = new HeaderBuffer(size);
    try {
      let length = Math.min(size, FIRST_READ_BYTES);
      fill(header.grow(length), 0);
      for (;;) {
        try {
          return parse(header.bytes, size, false, source);
        } catch (error) {
          if (!(error instanceof NeedMoreBytes)) {
            throw error;
          }
          const had = length;
          length = nextHeaderLength(had, error.needed, size);
          fill(header.grow(length), had);
        }
      }
    } finally {
      header.release();
    }
  } finally {
    fs.closeSync(fd);
  }
}
