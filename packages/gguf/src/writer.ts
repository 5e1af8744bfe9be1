import { GgufError, GgufErrorCode } from "./errors";
import { findGgmlType, findGgmlTypeByName, type GgmlTypeInfo, tensorByteSize } from "./ggml-types";
import {
  DEFAULT_ALIGNMENT,
  MAX_ARRAY_NESTING,
  MAX_KEY_BYTES,
  MAX_TENSOR_DIMS,
  MAX_TENSOR_NAME_BYTES,
} from "./limits";
import { type GgufArrayValue, type GgufValue, GgufValueType, valueTypeName } from "./metadata";
import { alignUp } from "./reader";
import { GgufStringList } from "./string-list";

/** Tensor bytes given all at once, or produced in chunks (for files larger than memory). */
export type TensorData = Uint8Array | (() => Iterable<Uint8Array> | AsyncIterable<Uint8Array>);

interface PendingTensor {
  readonly name: string;
  readonly type: GgmlTypeInfo;
  readonly shape: readonly number[];
  readonly byteSize: number;
  readonly data: TensorData;
}

/** Options for {@link GgufWriter}. */
export interface GgufWriterOptions {
  /** Alignment of tensor data, a power of two (default 32; written as `general.alignment` if not 32). */
  readonly alignment?: number;
}

/** Progress callback: bytes written so far and in total. */
export type WriteProgress = (written: number, total: number) => void;

/**
 * Receives the file in order, chunk by chunk (e.g. a `WritableStreamDefaultWriter`'s `write`).
 * The writer awaits each call before producing the next chunk.
 */
export type ChunkSink = (chunk: Uint8Array) => void | Promise<void>;

/**
 * Builds a GGUF v3 file: metadata in insertion order, tensors in insertion order, each tensor's
 * data aligned and zero-padded, offsets contiguous (the layout llama.cpp requires).
 *
 * @example
 * const writer = new GgufWriter();
 * writer.set("general.architecture", gguf.string("bitnet-b1.58"));
 * writer.addTensor("output_norm.weight", "F32", [2560], new Uint8Array(2560 * 4));
 * await writer.writeFile("model.gguf"); // Node; anywhere: await writer.toBytes() or writeTo(sink)
 */
export class GgufWriter {
  readonly alignment: number;
  readonly #metadata = new Map<string, GgufValue>();
  readonly #tensors: PendingTensor[] = [];
  readonly #names = new Set<string>();

  constructor(options: GgufWriterOptions = {}) {
    const alignment = options.alignment ?? DEFAULT_ALIGNMENT;
    if (
      !Number.isInteger(alignment) ||
      alignment <= 0 ||
      (alignment & (alignment - 1)) !== 0 ||
      alignment > 2 ** 30
    ) {
      throw invalid(`alignment ${alignment} is not a power of two between 1 and 2^30`);
    }
    this.alignment = alignment;
    if (alignment !== DEFAULT_ALIGNMENT) {
      this.#metadata.set("general.alignment", { type: GgufValueType.UINT32, value: alignment });
    }
  }

  /** Sets a metadata key (replacing an earlier value of the same key, keeping its position). */
  set(key: string, value: GgufValue): this {
    checkKey(key);
    checkValue(key, value, 0);
    if (key === "general.alignment") {
      if (value.type !== GgufValueType.UINT32 || value.value !== this.alignment) {
        throw invalid(
          `"general.alignment" must be the UINT32 ${this.alignment} given to the writer`,
        );
      }
    }
    this.#metadata.set(key, value);
    return this;
  }

  /** Copies every key of `entries` (e.g. another file's metadata). */
  setAll(entries: Iterable<[string, GgufValue]>): this {
    for (const [key, value] of entries) {
      if (key !== "general.alignment") {
        this.set(key, value);
      }
    }
    return this;
  }

  /**
   * Adds a tensor. `shape` is in ggml order (`shape[0]` = row length). The data's byte length
   * must match the type and shape exactly; chunked data is checked as it is written.
   */
  addTensor(
    name: string,
    type: GgmlTypeInfo | string | number,
    shape: readonly number[],
    data: TensorData,
  ): this {
    const info = resolveType(type);
    const nameBytes = utf8ByteLength(name);
    if (nameBytes === 0 || nameBytes > MAX_TENSOR_NAME_BYTES || !name.isWellFormed()) {
      throw invalid(
        `tensor name "${name}" must be 1 to ${MAX_TENSOR_NAME_BYTES} bytes of valid UTF-8`,
      );
    }
    if (this.#names.has(name)) {
      throw invalid(`tensor "${name}" was added twice`);
    }
    if (shape.length > MAX_TENSOR_DIMS) {
      throw invalid(
        `tensor "${name}" has ${shape.length} dimensions; at most ${MAX_TENSOR_DIMS} are allowed`,
      );
    }
    for (const dim of shape) {
      if (!Number.isSafeInteger(dim) || dim < 0) {
        throw invalid(`tensor "${name}" has an invalid dimension ${dim}`);
      }
    }
    if ((shape[0] ?? 1) % info.blockSize !== 0) {
      throw invalid(
        `tensor "${name}" has row length ${shape[0]}, not a multiple of the ${info.name} block size ${info.blockSize}`,
      );
    }
    const byteSize = tensorByteSize(info, shape);
    if (data instanceof Uint8Array && data.length !== byteSize) {
      throw invalid(
        `tensor "${name}" (${info.name} [${shape.join(", ")}]) needs ${byteSize} bytes but ${data.length} were given`,
      );
    }
    this.#names.add(name);
    this.#tensors.push({ name, type: info, shape: [...shape], byteSize, data });
    return this;
  }

  /** Total size of the file this writer produces. */
  get byteLength(): number {
    return this.encodeHeader().length + this.#dataLength();
  }

  #dataLength(): number {
    let total = 0;
    for (const t of this.#tensors) {
      total += alignUp(t.byteSize, this.alignment);
    }
    return total;
  }

  /** The header, metadata and tensor infos, padded to the start of the data section. */
  encodeHeader(): Uint8Array {
    const out = new ByteBuilder();
    out.bytes(new Uint8Array([0x47, 0x47, 0x55, 0x46]));
    out.u32(3);
    out.u64(BigInt(this.#tensors.length));
    out.u64(BigInt(this.#metadata.size));
    for (const [key, value] of this.#metadata) {
      out.string(key);
      out.u32(value.type);
      writeValue(out, value);
    }
    let offset = 0;
    for (const t of this.#tensors) {
      out.string(t.name);
      out.u32(t.shape.length);
      for (const dim of t.shape) {
        out.u64(BigInt(dim));
      }
      out.u32(t.type.id);
      out.u64(BigInt(offset));
      offset += alignUp(t.byteSize, this.alignment);
    }
    out.padTo(this.alignment);
    return out.finish();
  }

  /** The whole file in memory (for tests and small files). */
  async toBytes(): Promise<Uint8Array<ArrayBuffer>> {
    const header = this.encodeHeader();
    const result = new Uint8Array(header.length + this.#dataLength());
    result.set(header, 0);
    let pos = header.length;
    for (const t of this.#tensors) {
      for await (const chunk of this.#chunks(t)) {
        result.set(chunk, pos);
        pos += chunk.length;
      }
      pos = header.length + alignUp(pos - header.length, this.alignment);
    }
    return result;
  }

  /**
   * Streams the file, in order, to `sink`: the header, then each tensor's data and padding,
   * without holding the whole file in memory.
   *
   * @example
   * const writable = await fileHandle.createWritable(); // e.g. an OPFS file in a browser
   * await writer.writeTo((chunk) => writable.write(chunk));
   * await writable.close();
   */
  async writeTo(sink: ChunkSink, options: { onProgress?: WriteProgress } = {}): Promise<void> {
    const header = this.encodeHeader();
    const total = header.length + this.#dataLength();
    let written = 0;
    const write = async (chunk: Uint8Array): Promise<void> => {
      await sink(chunk);
      written += chunk.length;
      options.onProgress?.(written, total);
    };
    await write(header);
    for (const t of this.#tensors) {
      for await (const chunk of this.#chunks(t)) {
        await write(chunk);
      }
      const padding = alignUp(t.byteSize, this.alignment) - t.byteSize;
      if (padding > 0) {
        await write(new Uint8Array(padding));
      }
    }
  }

  /**
   * Writes the file to `filePath` (Node only; this build has no file system and throws
   * `GGUF_NODE_ONLY`: use {@link GgufWriter.toBytes} or {@link GgufWriter.writeTo} here).
   */
  async writeFile(filePath: string, _options: { onProgress?: WriteProgress } = {}): Promise<void> {
    throw new GgufError(
      GgufErrorCode.NODE_ONLY,
      `could not write "${filePath}" - writing a file by path needs Node.\nIn a browser, use writer.toBytes() or writer.writeTo(sink).`,
    );
  }

  async *#chunks(t: PendingTensor): AsyncGenerator<Uint8Array> {
    if (t.data instanceof Uint8Array) {
      yield t.data;
      return;
    }
    let produced = 0;
    for await (const chunk of t.data()) {
      produced += chunk.length;
      if (produced > t.byteSize) {
        break;
      }
      yield chunk;
    }
    if (produced !== t.byteSize) {
      throw invalid(
        `tensor "${t.name}" produced ${produced > t.byteSize ? "more than" : "only"} ${produced} bytes; it needs exactly ${t.byteSize}`,
      );
    }
  }
}

const textEncoder = new TextEncoder();

/**
 * Bytes of `s` in UTF-8, as TextEncoder writes it (a lone surrogate becomes U+FFFD, 3 bytes),
 * without encoding it: metadata holds ~100k token strings.
 */
export function utf8ByteLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      n += 1;
    } else if (c < 0x800) {
      n += 2;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n += 4;
        i++;
      } else {
        n += 3;
      }
    } else {
      n += 3;
    }
  }
  return n;
}

function resolveType(type: GgmlTypeInfo | string | number): GgmlTypeInfo {
  const info =
    typeof type === "number"
      ? findGgmlType(type)
      : typeof type === "string"
        ? findGgmlTypeByName(type)
        : type;
  if (info === undefined) {
    throw invalid(`ggml type ${String(type)} is unknown`);
  }
  return info;
}

function invalid(reason: string): GgufError {
  return new GgufError(GgufErrorCode.INVALID_WRITE, `could not write GGUF - ${reason}.`);
}

function checkKey(key: string): void {
  const bytes = utf8ByteLength(key);
  if (bytes === 0 || bytes > MAX_KEY_BYTES || !key.isWellFormed()) {
    throw invalid(`metadata key "${key}" must be 1 to ${MAX_KEY_BYTES} bytes of valid UTF-8`);
  }
}

const INTEGER_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  [GgufValueType.UINT8]: [0, 0xff],
  [GgufValueType.INT8]: [-0x80, 0x7f],
  [GgufValueType.UINT16]: [0, 0xffff],
  [GgufValueType.INT16]: [-0x8000, 0x7fff],
  [GgufValueType.UINT32]: [0, 0xffffffff],
  [GgufValueType.INT32]: [-0x80000000, 0x7fffffff],
};

const ARRAY_CLASSES: Partial<Record<GgufValueType, new (n: number) => ArrayLike<unknown>>> = {
  [GgufValueType.UINT8]: Uint8Array,
  [GgufValueType.INT8]: Int8Array,
  [GgufValueType.UINT16]: Uint16Array,
  [GgufValueType.INT16]: Int16Array,
  [GgufValueType.UINT32]: Uint32Array,
  [GgufValueType.INT32]: Int32Array,
  [GgufValueType.FLOAT32]: Float32Array,
  [GgufValueType.FLOAT64]: Float64Array,
  [GgufValueType.UINT64]: BigUint64Array,
  [GgufValueType.INT64]: BigInt64Array,
};

function checkValue(key: string, value: GgufValue, depth: number): void {
  const bad = (why: string): never => {
    throw invalid(`metadata "${key}" (${valueTypeName(value.type)}) ${why}`);
  };
  switch (value.type) {
    case GgufValueType.UINT8:
    case GgufValueType.INT8:
    case GgufValueType.UINT16:
    case GgufValueType.INT16:
    case GgufValueType.UINT32:
    case GgufValueType.INT32: {
      const [min, max] = INTEGER_RANGES[value.type]!;
      if (!Number.isInteger(value.value) || value.value < min || value.value > max) {
        bad(`must be an integer from ${min} to ${max}, got ${value.value}`);
      }
      return;
    }
    case GgufValueType.FLOAT32:
    case GgufValueType.FLOAT64:
      if (typeof value.value !== "number") {
        bad("must be a number");
      }
      return;
    case GgufValueType.UINT64:
      if (typeof value.value !== "bigint" || value.value < 0n || value.value >= 1n << 64n) {
        bad("must be a bigint from 0 to 2^64-1");
      }
      return;
    case GgufValueType.INT64:
      if (
        typeof value.value !== "bigint" ||
        value.value < -(1n << 63n) ||
        value.value >= 1n << 63n
      ) {
        bad("must be a bigint from -2^63 to 2^63-1");
      }
      return;
    case GgufValueType.BOOL:
      if (typeof value.value !== "boolean") {
        bad("must be a boolean");
      }
      return;
    case GgufValueType.STRING:
      if (typeof value.value !== "string" || !value.value.isWellFormed()) {
        bad("must be a well-formed string (no lone surrogates)");
      }
      return;
    case GgufValueType.ARRAY:
      checkArray(key, value, depth, bad);
      return;
    default:
      throw invalid(`metadata "${key}" has unknown value type ${(value as { type: number }).type}`);
  }
}

function checkArray(
  key: string,
  value: GgufArrayValue,
  depth: number,
  bad: (why: string) => never,
): void {
  const { elementType, value: data } = value;
  if (depth + 1 >= MAX_ARRAY_NESTING && elementType === GgufValueType.ARRAY) {
    bad(`nests arrays deeper than ${MAX_ARRAY_NESTING}`);
  }
  const cls = ARRAY_CLASSES[elementType];
  if (cls !== undefined) {
    if (!(data instanceof cls)) {
      bad(`must hold a ${cls.name} for ${valueTypeName(elementType)} elements`);
    }
    return;
  }
  if (elementType === GgufValueType.STRING && data instanceof GgufStringList) {
    return; // its bytes were validated as UTF-8 when read, or encoded from strings
  }
  if (!Array.isArray(data)) {
    bad(`must hold a plain array for ${valueTypeName(elementType)} elements`);
  }
  for (let i = 0; i < data.length; i++) {
    const element = data[i];
    if (elementType === GgufValueType.BOOL && typeof element !== "boolean") {
      bad(`element ${i} must be a boolean`);
    } else if (
      elementType === GgufValueType.STRING &&
      (typeof element !== "string" || !element.isWellFormed())
    ) {
      bad(`element ${i} must be a well-formed string`);
    } else if (elementType === GgufValueType.ARRAY) {
      const nested = element as GgufArrayValue;
      if (typeof nested !== "object" || nested === null || nested.type !== GgufValueType.ARRAY) {
        bad(`element ${i} must be an array value`);
      }
      checkValue(`${key}[${i}]`, nested, depth + 1);
    }
  }
}

/** A growable little-endian byte buffer. */
class ByteBuilder {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  #len = 0;

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) {
      return;
    }
    let size = this.#buf.length * 2;
    while (size < this.#len + n) {
      size *= 2;
    }
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.#reserve(1);
    this.#view.setUint8(this.#len, v);
    this.#len += 1;
  }

  u32(v: number): void {
    this.#reserve(4);
    this.#view.setUint32(this.#len, v, true);
    this.#len += 4;
  }

  u64(v: bigint): void {
    this.#reserve(8);
    this.#view.setBigUint64(this.#len, v, true);
    this.#len += 8;
  }

  scalar(type: GgufValueType, v: number | bigint | boolean): void {
    const sizes: Record<number, number> = {
      0: 1,
      1: 1,
      2: 2,
      3: 2,
      4: 4,
      5: 4,
      6: 4,
      7: 1,
      10: 8,
      11: 8,
      12: 8,
    };
    this.#reserve(sizes[type] ?? 8);
    const at = this.#len;
    const view = this.#view;
    switch (type) {
      case GgufValueType.UINT8:
        view.setUint8(at, v as number);
        break;
      case GgufValueType.INT8:
        view.setInt8(at, v as number);
        break;
      case GgufValueType.UINT16:
        view.setUint16(at, v as number, true);
        break;
      case GgufValueType.INT16:
        view.setInt16(at, v as number, true);
        break;
      case GgufValueType.UINT32:
        view.setUint32(at, v as number, true);
        break;
      case GgufValueType.INT32:
        view.setInt32(at, v as number, true);
        break;
      case GgufValueType.FLOAT32:
        view.setFloat32(at, v as number, true);
        break;
      case GgufValueType.BOOL:
        view.setUint8(at, v ? 1 : 0);
        break;
      case GgufValueType.UINT64:
        view.setBigUint64(at, v as bigint, true);
        break;
      case GgufValueType.INT64:
        view.setBigInt64(at, v as bigint, true);
        break;
      case GgufValueType.FLOAT64:
        view.setFloat64(at, v as number, true);
        break;
    }
    this.#len += sizes[type] ?? 8;
  }

  bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  string(s: string): void {
    const n = utf8ByteLength(s);
    this.u64(BigInt(n));
    this.#reserve(n);
    textEncoder.encodeInto(s, this.#buf.subarray(this.#len, this.#len + n));
    this.#len += n;
  }

  padTo(alignment: number): void {
    const target = alignUp(this.#len, alignment);
    this.#reserve(target - this.#len);
    this.#buf.fill(0, this.#len, target);
    this.#len = target;
  }

  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

function writeValue(out: ByteBuilder, value: GgufValue): void {
  switch (value.type) {
    case GgufValueType.STRING:
      out.string(value.value);
      return;
    case GgufValueType.ARRAY:
      writeArray(out, value);
      return;
    default:
      out.scalar(value.type, value.value);
  }
}

function writeArray(out: ByteBuilder, value: GgufArrayValue): void {
  out.u32(value.elementType);
  const data = value.value;
  out.u64(BigInt(data.length));
  if (ArrayBuffer.isView(data)) {
    // Typed arrays are little-endian on every platform Node supports for this package.
    out.bytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return;
  }
  if (data instanceof GgufStringList) {
    for (let i = 0; i < data.length; i++) {
      out.u64(BigInt(data.end(i) - data.start(i)));
      out.bytes(data.bytes(i));
    }
    return;
  }
  for (const element of data) {
    if (typeof element === "string") {
      out.string(element);
    } else if (typeof element === "boolean") {
      out.u8(element ? 1 : 0);
    } else {
      writeArray(out, element);
    }
  }
}
