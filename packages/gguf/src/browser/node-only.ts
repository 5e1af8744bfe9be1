/**
 * The browser build's stand-ins for the Node-only functions: the same names and types, so code
 * shared between Node and browsers (and packages built on this one) bundles unchanged, and a call
 * fails with `GGUF_NODE_ONLY` and what to use instead.
 */
import { GgufError, GgufErrorCode } from "../errors";
import type { ReadGgufFileOptions } from "../node/file";
import type { FileSource } from "../node/file-source";
import type { GgufFile } from "../reader";

function nodeOnly(call: string): GgufError {
  return new GgufError(
    GgufErrorCode.NODE_ONLY,
    `could not ${call} - reading files by path needs Node.\nIn a browser, read from a ByteSource: readGgufFrom(blobSource(file)), readGgufFrom(await openHttpSource(url)) or readGgufFrom(bytesSource(buffer)).`,
  );
}

export async function readGgufFile(
  path: string,
  _options: ReadGgufFileOptions = {},
): Promise<GgufFile> {
  throw nodeOnly(`read "${path}"`);
}

export function readGgufFileSync(path: string, _options: ReadGgufFileOptions = {}): GgufFile {
  throw nodeOnly(`read "${path}"`);
}

export async function openFileSource(path: string): Promise<FileSource> {
  throw nodeOnly(`open "${path}"`);
}
