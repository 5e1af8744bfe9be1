/** Node only: byte sources over files on disk (the browser build has stubs that throw). */
import * as fs from "node:fs";
import { GgufError, GgufErrorCode } from "../errors";
import type { ByteSource } from "../source";

/** A {@link ByteSource} that holds an open file descriptor until `close()`. */
export interface FileSource extends ByteSource {
  readonly name: string;
  close(): Promise<void>;
}

/**
 * Opens a file for random access. Reads are positioned (`pread`), so concurrent reads are safe;
 * close the source when done with the file and every tensor read from it.
 *
 * @example
 * const source = await openFileSource("model.gguf");
 * try {
 *   const file = await readGgufFrom(source);
 *   const embd = await file.readTensorData("token_embd.weight");
 * } finally {
 *   await source.close();
 * }
 */
export async function openFileSource(path: string): Promise<FileSource> {
  let handle: fs.promises.FileHandle;
  let size: number;
  try {
    handle = await fs.promises.open(path, "r");
  } catch (error) {
    throw ioError(path, error);
  }
  try {
    size = (await handle.stat()).size;
  } catch (error) {
    await handle.close().catch(() => {});
    throw ioError(path, error);
  }
  let closed = false;
  return {
    size,
    name: path,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (closed) {
        throw new GgufError(
          GgufErrorCode.IO,
          `could not read "${path}" - its source was closed.\nKeep the source open while tensors are read from it.`,
        );
      }
      return readAt(path, handle, offset, length);
    },
    async close(): Promise<void> {
      if (!closed) {
        closed = true;
        await handle.close();
      }
    },
  };
}

/**
 * A source that opens the file for each read and closes it after: what `readGgufFile(path)`
 * attaches to a header-only file, so its tensors stay readable without holding a descriptor
 * that nobody would close. Each read checks that the file still has the size it had.
 */
export function reopeningFileSource(path: string, size: number): ByteSource {
  return {
    size,
    name: path,
    async read(offset: number, length: number): Promise<Uint8Array> {
      let handle: fs.promises.FileHandle;
      try {
        handle = await fs.promises.open(path, "r");
      } catch (error) {
        throw ioError(path, error);
      }
      try {
        const now = (await handle.stat()).size;
        if (now !== size) {
          throw new GgufError(
            GgufErrorCode.IO,
            `could not read "${path}" - the file is ${now} bytes now but was ${size} bytes when its header was read.\nIt changed on disk; read it again.`,
          );
        }
        return await readAt(path, handle, offset, length);
      } finally {
        await handle.close();
      }
    },
  };
}

// One read is capped at 2 GiB by the OS and Node, so large ranges are read in chunks.
const CHUNK_BYTES = 64 << 20;

/** Reads exactly `length` bytes at `offset` (or throws: a file that shrank is an error). */
export async function readAt(
  path: string,
  handle: fs.promises.FileHandle,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const into = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = Math.min(CHUNK_BYTES, length - done);
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(into, done, n, offset + done));
    } catch (error) {
      throw ioError(path, error);
    }
    if (bytesRead === 0) {
      throw shrunk(path, offset + done, offset + length);
    }
    done += bytesRead;
  }
  return into;
}

export function shrunk(path: string, got: number, wanted: number): GgufError {
  return new GgufError(
    GgufErrorCode.IO,
    `could not read "${path}" - the file shrank while reading (it ends at byte ${got}, ${wanted} were expected).`,
  );
}

export function ioError(path: string, error: unknown): GgufError {
  if (error instanceof GgufError) {
    return error;
  }
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
