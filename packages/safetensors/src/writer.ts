import * as fs from "node:fs";
import { DTYPE_BYTES } from "./dtypes";
import { SafetensorsError, SafetensorsErrorCode } from "./errors";

export interface SafetensorsTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** Encodes tensors (in the given order) and string metadata as a safetensors file. */
export function encodeSafetensors(
  tensors: readonly SafetensorsTensor[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    header["__metadata__"] = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    const size = DTYPE_BYTES[t.dtype];
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (size === undefined || count * size !== t.data.length) {
      throw new SafetensorsError(
        SafetensorsErrorCode.SIZE_MISMATCH,
        `could not write tensor "${t.name}" - ${t.dtype} ${JSON.stringify(t.shape)} does not match its ${t.data.length} bytes.`,
      );
    }
    header[t.name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + t.data.length],
    };
    offset += t.data.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // the data section starts 8-aligned
  const head = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors) {
    out.set(t.data, at);
    at += t.data.length;
  }
  return out;
}

export function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensor[],
  metadata: Record<string, string> = {},
): void {
  fs.writeFileSync(path, encodeSafetensors(tensors, metadata));
}
