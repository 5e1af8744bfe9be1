/**
 * safetensors: 8 bytes of little-endian header length N, N bytes of JSON
 * `{"__metadata__": {…}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, …}`, then the
 * data section (offsets are relative to it). Everything is validated before any tensor is
 * read: sizes against dtype × shape, ranges against the file, no overlaps, no duplicate keys.
 */
import * as fs from "node:fs";
import { DTYPE_BYTES } from "./dtypes";
import { SafetensorsErrorCode as Code, SafetensorsError } from "./errors";

/** Largest header accepted (the 2B-4T checkpoints' headers are ~30 KB). */
export const MAX_HEADER_BYTES: number = 100 * 1024 * 1024;
/** Most dimensions a tensor may have. */
export const MAX_DIMS: number = 8;

export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly elementCount: number;
  /** Absolute byte offset in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface SafetensorsFile {
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  /** The tensor's bytes (a view for in-memory files, a fresh read for files on disk). */
  read(name: string): Uint8Array;
  /** Releases the file descriptor of an on-disk file (no-op in memory). */
  close(): void;
}

function fail(code: (typeof Code)[keyof typeof Code], message: string): never {
  throw new SafetensorsError(code, message);
}

/** Rejects duplicate keys, which JSON.parse would silently collapse (shadowed tensors). */
function checkDuplicateKeys(json: string): void {
  // Only the top-level object's keys matter; a tiny scanner over strings and nesting depth.
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (ch === '"') {
      let j = i + 1;
      while (j < json.length && json[j] !== '"') {
        j += json[j] === "\\" ? 2 : 1;
      }
      if (depth === 1) {
        let k = j + 1;
        while (k < json.length && /\s/.test(json[k]!)) {
          k++;
        }
        if (json[k] === ":") {
          const key = JSON.parse(json.slice(i, j + 1)) as string;
          if (seen.has(key)) {
            fail(
              Code.BAD_HEADER,
              `could not read the safetensors header - key "${key}" appears twice.`,
            );
          }
          seen.add(key);
        }
      }
      i = j;
    } else if (ch === "{" || ch === "[") {
      depth++;
    } else if (ch === "}" || ch === "]") {
      depth--;
    }
  }
}

/** Validates a header (given the data section's size) into tensor infos. */
export function parseHeader(
  headerBytes: Uint8Array,
  dataStart: number,
  dataLength: number,
): { metadata: Record<string, string>; tensors: Map<string, SafetensorsTensorInfo> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    fail(Code.BAD_HEADER, "could not read the safetensors header - it is not valid UTF-8.");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    fail(
      Code.BAD_HEADER,
      `could not read the safetensors header - it is not valid JSON (${(error as Error).message}).`,
    );
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    fail(Code.BAD_HEADER, "could not read the safetensors header - it is not a JSON object.");
  }
  checkDuplicateKeys(text);
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        fail(
          Code.BAD_HEADER,
          "could not read the safetensors header - __metadata__ is not an object of strings.",
        );
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") {
          fail(
            Code.BAD_HEADER,
            `could not read the safetensors header - __metadata__.${k} is not a string.`,
          );
        }
        metadata[k] = v;
      }
      continue;
    }
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const where = `tensor "${name}"`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      fail(Code.BAD_TENSOR, `could not read ${where} - its entry is not an object.`);
    }
    if (typeof entry.dtype !== "string" || DTYPE_BYTES[entry.dtype] === undefined) {
      fail(
        Code.BAD_TENSOR,
        `could not read ${where} - unknown dtype ${JSON.stringify(entry.dtype)}.`,
      );
    }
    if (
      !Array.isArray(entry.shape) ||
      entry.shape.length > MAX_DIMS ||
      !entry.shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) {
      fail(
        Code.BAD_TENSOR,
        `could not read ${where} - shape ${JSON.stringify(entry.shape)} is not a list of at most ${MAX_DIMS} non-negative integers.`,
      );
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[1] < offsets[0]
    ) {
      fail(
        Code.BAD_TENSOR,
        `could not read ${where} - data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin ≤ end.`,
      );
    }
    const shape = entry.shape as number[];
    let count = 1;
    for (const d of shape) {
      count *= d;
      if (!Number.isSafeInteger(count)) {
        fail(
          Code.BAD_TENSOR,
          `could not read ${where} - shape ${JSON.stringify(shape)} has too many elements.`,
        );
      }
    }
    const [begin, end] = offsets as [number, number];
    const bytes = count * DTYPE_BYTES[entry.dtype]!;
    if (end - begin !== bytes) {
      fail(
        Code.SIZE_MISMATCH,
        `could not read ${where} - ${entry.dtype} ${JSON.stringify(shape)} needs ${bytes} bytes but its offsets span ${end - begin}.`,
      );
    }
    if (end > dataLength) {
      fail(
        Code.OUT_OF_BOUNDS,
        `could not read ${where} - its bytes end at ${end}, past the ${dataLength}-byte data section.`,
      );
    }
    tensors.set(name, {
      name,
      dtype: entry.dtype,
      shape,
      elementCount: count,
      offset: dataStart + begin,
      byteLength: bytes,
    });
  }
  const sorted = [...tensors.values()]
    .filter((t) => t.byteLength > 0)
    .sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (sorted[i]!.offset < prev.offset + prev.byteLength) {
      fail(
        Code.OUT_OF_BOUNDS,
        `could not read tensor "${sorted[i]!.name}" - its bytes overlap tensor "${prev.name}".`,
      );
    }
  }
  return { metadata, tensors };
}

function headerLength(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    fail(
      Code.TRUNCATED,
      `could not read the safetensors file - it has ${fileSize} bytes, fewer than the 8-byte header length.`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    fail(
      Code.HEADER_TOO_LARGE,
      `could not read the safetensors file - its header claims ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit.`,
    );
  }
  if (Number(n) + 8 > fileSize) {
    fail(
      Code.TRUNCATED,
      `could not read the safetensors file - its ${n}-byte header runs past the end of the ${fileSize}-byte file.`,
    );
  }
  return Number(n);
}

/** A safetensors file already in memory; `read` returns zero-copy views. */
export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const n = headerLength(bytes.subarray(0, 8), bytes.length);
  const { metadata, tensors } = parseHeader(bytes.subarray(8, 8 + n), 8 + n, bytes.length - 8 - n);
  return {
    metadata,
    tensors,
    read(name) {
      const t =
        tensors.get(name) ??
        fail(Code.MISSING_TENSOR, `could not find tensor "${name}" in the safetensors file.`);
      return bytes.subarray(t.offset, t.offset + t.byteLength);
    },
    close() {},
  };
}

/** A safetensors file on disk: the header is read and validated now, each tensor when asked for. */
export function openSafetensors(path: string): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (error) {
    throw new SafetensorsError(Code.IO, `could not open ${path} - ${(error as Error).message}.`, {
      cause: error,
    });
  }
  try {
    const size = fs.fstatSync(fd).size;
    const prefix = new Uint8Array(8);
    fs.readSync(fd, prefix, 0, Math.min(8, size), 0);
    const n = headerLength(prefix, size);
    const header = new Uint8Array(n);
    fs.readSync(fd, header, 0, n, 8);
    const { metadata, tensors } = parseHeader(header, 8 + n, size - 8 - n);
    let open = true;
    return {
      metadata,
      tensors,
      read(name) {
        const t =
          tensors.get(name) ??
          fail(Code.MISSING_TENSOR, `could not find tensor "${name}" in ${path}.`);
        if (!open) {
          fail(Code.IO, `could not read tensor "${name}" - ${path} was closed.`);
        }
        const out = new Uint8Array(t.byteLength);
        let done = 0;
        while (done < out.length) {
          const got = fs.readSync(fd, out, done, out.length - done, t.offset + done);
          if (got <= 0) {
            fail(Code.TRUNCATED, `could not read tensor "${name}" - ${path} ended early.`);
          }
          done += got;
        }
        return out;
      },
      close() {
        if (open) {
          open = false;
          fs.closeSync(fd);
        }
      },
    };
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}
