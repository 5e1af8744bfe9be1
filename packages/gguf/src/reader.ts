import { GgufError, GgufErrorCode } from "./errors";
import { findGgmlType, type GgmlTypeInfo, tensorByteSizeBig } from "./ggml-types";
import {
  DEFAULT_ALIGNMENT,
  MAX_ARRAY_LENGTH,
  MAX_ARRAY_NESTING,
  MAX_KEY_BYTES,
  MAX_KV_COUNT,
  MAX_STRING_BYTES,
  MAX_TENSOR_COUNT,
  MAX_TENSOR_DIMS,
  MAX_TENSOR_NAME_BYTES,
  MIN_KV_BYTES,
  MIN_TENSOR_INFO_BYTES,
} from "./limits";
import {
  type GgufArrayData,
  type GgufArrayValue,
  GgufMetadata,
  type GgufValue,
  GgufValueType,
  isValueType,
  scalarByteSize,
  valueTypeName,
} from "./metadata";
import { type ByteSource, readExactly } from "./source";
import { GgufStringList, isWellFormedUtf8 } from "./string-list";

/** One tensor as described by the file: where its bytes are and how to read them. */
export interface GgufTensorInfo {
  /** Tensor name, e.g. `blk.0.attn_q.weight`. */
  readonly name: string;
  /** ggml type of the data. */
  readonly type: GgmlTypeInfo;
  /** Dimensions in ggml order: `shape[0]` is the row length (fastest varying). */
  readonly shape: readonly number[];
  /** Product of the dimensions. */
  readonly elementCount: number;
  /** Offset of the data relative to the start of the data section. */
  readonly offset: number;
  /** Absolute offset of the data in the file. */
  readonly fileOffset: number;
  /** Size of the data in bytes (without alignment padding). */
  readonly byteSize: number;
  /** Byte offset of this tensor's info record in the header (for error messages). */
  readonly infoOffset: number;
}

/**
 * A parsed GGUF file: header, metadata, tensor descriptors, and the way to its tensor data: the
 * whole file in memory, a {@link ByteSource} to read each tensor from on demand, or neither.
 */
export class GgufFile {
  /** GGUF version (2 or 3). */
  readonly version: number;
  readonly metadata: GgufMetadata;
  readonly tensors: readonly GgufTensorInfo[];
  /** Alignment of tensor data (from `general.alignment`, default 32). */
  readonly alignment: number;
  /** Absolute offset where the data section starts. */
  readonly dataOffset: number;
  /** Total size of the file in bytes. */
  readonly fileSize: number;
  /**
   * Where tensor data is read from on demand (`readTensorData`), when the file was read from a
   * source (or from a path: then reads reopen the file).
   */
  readonly source: ByteSource | undefined;
  readonly #bytes: Uint8Array | undefined;
  readonly #byName: Map<string, GgufTensorInfo>;

  constructor(fields: {
    version: number;
    metadata: GgufMetadata;
    tensors: GgufTensorInfo[];
    alignment: number;
    dataOffset: number;
    fileSize: number;
    bytes: Uint8Array | undefined;
    source?: ByteSource | undefined;
  }) {
    this.version = fields.version;
    this.metadata = fields.metadata;
    this.tensors = fields.tensors;
    this.alignment = fields.alignment;
    this.dataOffset = fields.dataOffset;
    this.fileSize = fields.fileSize;
    this.#bytes = fields.bytes;
    this.source = fields.source;
    this.#byName = new Map(fields.tensors.map((t) => [t.name, t]));
  }

  /** True when the whole file is in memory and `tensorData` can return views. */
  get hasTensorData(): boolean {
    return this.#bytes !== undefined;
  }

  /** The tensor with this name, or undefined. */
  findTensor(name: string): GgufTensorInfo | undefined {
    return this.#byName.get(name);
  }

  /** The tensor with this name; throws `GGUF_MISSING_TENSOR` if absent. */
  tensor(name: string): GgufTensorInfo {
    const info = this.#byName.get(name);
    if (info === undefined) {
      throw new GgufError(
        GgufErrorCode.MISSING_TENSOR,
        `could not find tensor "${name}" - the file has ${this.tensors.length} tensors and none has this name.`,
      );
    }
    return info;
  }

  /**
   * A zero-copy view of a tensor's bytes. Requires a file parsed with its data
   * (`parseGguf(bytes)` of the whole file, or `readGgufFile(path, { tensorData: true })`).
   */
  tensorData(tensor: string | GgufTensorInfo): Uint8Array {
    const info = typeof tensor === "string" ? this.tensor(tensor) : tensor;
    if (this.#bytes === undefined) {
      throw new GgufError(
        GgufErrorCode.NO_TENSOR_DATA,
        `could not return the data of tensor "${info.name}" - the file was read without its tensor data.\nRead it with { tensorData: true } to access tensor bytes.`,
      );
    }
    return this.#bytes.subarray(info.fileOffset, info.fileOffset + info.byteSize);
  }

  /**
   * A tensor's bytes, wherever the file is: a view when the whole file is in memory, else one
   * read of exactly this tensor's range from {@link GgufFile.source}. Callers must not write to
   * the result (it may be a view of the file).
   *
   * @example
   * const file = await readGgufFrom(blobSource(pickedFile));
   * const embd = await file.readTensorData("token_embd.weight");
   */
  async readTensorData(tensor: string | GgufTensorInfo): Promise<Uint8Array> {
    const info = typeof tensor === "string" ? this.tensor(tensor) : tensor;
    if (this.#bytes !== undefined) {
      return this.tensorData(info);
    }
    if (this.source === undefined) {
      throw new GgufError(
        GgufErrorCode.NO_TENSOR_DATA,
        `could not read the data of tensor "${info.name}" - the file was parsed from a header alone, with nothing to read its data from.\nParse the whole file, or read it with readGgufFrom(source).`,
      );
    }
    return readExactly(this.source, info.fileOffset, info.byteSize, `tensor "${info.name}"`);
  }
}

/** Options for {@link parseGguf}. */
export interface ParseGgufOptions {
  /**
   * Size of the whole file when `bytes` holds only its beginning (header-only parsing).
   * Defaults to `bytes.length`, meaning `bytes` is the whole file and tensor data is available.
   */
  readonly fileSize?: number;
}

/**
 * Thrown internally when `bytes` is a prefix of the file and parsing needs more of it;
 * file readers catch it, read more and retry. Never escapes the package.
 */
export class NeedMoreBytes extends Error {
  constructor(readonly needed: number) {
    super(`need ${needed} bytes`);
  }
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const INT64_MAX = (1n << 63n) - 1n;
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

class Cursor {
  readonly view: DataView;
  pos = 0;

  constructor(
    readonly bytes: Uint8Array,
    readonly fileSize: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes left in the file (not just in the buffer) after the cursor. */
  get remainingInFile(): number {
    return this.fileSize - this.pos;
  }

  /** `what` may be a function, so hot loops build their message only when it is needed. */
  need(n: number, lazyWhat: string | (() => string)): void {
    const end = this.pos + n;
    if (end <= this.bytes.length) {
      return;
    }
    if (end <= this.fileSize) {
      throw new NeedMoreBytes(end);
    }
    const what = typeof lazyWhat === "string" ? lazyWhat : lazyWhat();
    throw new GgufError(
      GgufErrorCode.TRUNCATED,
      `could not read ${what} - the file ends at byte ${this.fileSize} but ${what} needs ${n} bytes from offset ${this.pos}.\nThe file is truncated (an incomplete download or copy?).`,
      { offset: this.pos },
    );
  }

  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /**
   * A u64 length checked against `max` (≤ 2^53) and returned as a number, without a BigInt:
   * string arrays read one per element, and 400k BigInts would churn the young generation.
   */
  length(lazyWhat: string | (() => string), max: number, unit: string): number {
    const at = this.pos;
    this.need(8, lazyWhat);
    const low = this.view.getUint32(this.pos, true);
    const high = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    const v = high * 2 ** 32 + low;
    if (high >= 2 ** 21 || v > max) {
      const what = typeof lazyWhat === "string" ? lazyWhat : lazyWhat();
      throw new GgufError(
        GgufErrorCode.LIMIT_EXCEEDED,
        `could not read ${what} - its length ${(BigInt(high) << 32n) | BigInt(low)} exceeds the limit of ${max} ${unit}.\nThe file is corrupt or hostile.`,
        { offset: at },
      );
    }
    return v;
  }

  /** A u64 count checked against `max` (and returned as a number). */
  count(what: string, max: number, unit: string): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(max)) {
      throw new GgufError(
        GgufErrorCode.LIMIT_EXCEEDED,
        `could not read ${what} - it claims ${v} ${unit}, more than the limit of ${max}.\nThe file is corrupt or hostile.`,
        { offset: at },
      );
    }
    return Number(v);
  }

  /** A GGUF string: u64 length + UTF-8 bytes, validated. */
  string(what: string, maxBytes: number): string {
    const n = this.length(`the length of ${what}`, maxBytes, "bytes");
    this.need(n, what);
    const start = this.pos;
    const end = start + n;
    this.pos = end;
    return decodeUtf8(this.bytes, start, end, what);
  }
}

// ignoreBOM: keep a leading U+FEFF (a real token text in some vocabularies) instead of stripping it.
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeUtf8(bytes: Uint8Array, start: number, end: number, what: string): string {
  // ASCII fast path: token strings and keys are mostly short ASCII.
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  const slice = bytes.subarray(start, end);
  if (ascii && end - start < 64) {
    return String.fromCharCode.apply(null, slice as unknown as number[]);
  }
  try {
    // Browsers' TextDecoder refuses views of resizable buffers (the header is read into one):
    // decode a copy there. Node accepts them, but the copy is the same few bytes either way.
    return textDecoder.decode((bytes.buffer as ArrayBuffer).resizable ? slice.slice() : slice);
  } catch (error) {
    // The decoder is fatal: invalid UTF-8 throws instead of becoming U+FFFD.
    throw new GgufError(
      GgufErrorCode.INVALID_UTF8,
      `could not read ${what} - its ${end - start} bytes at offset ${start} are not valid UTF-8.\nThe file is corrupt.`,
      { offset: start, cause: error },
    );
  }
}

/**
 * Parses a GGUF file held in memory. With the whole file, tensor data is available through
 * {@link GgufFile.tensorData}; with a prefix and `options.fileSize`, only the header is parsed.
 *
 * Every malformed input throws a {@link GgufError} with a stable `code` and the byte `offset`.
 *
 * @example
 * const file = parseGguf(new Uint8Array(await readFile("model.gguf")));
 * console.log(file.metadata.getString("general.architecture"), file.tensors.length);
 */
export function parseGguf(bytes: Uint8Array, options: ParseGgufOptions = {}): GgufFile {
  const fileSize = options.fileSize ?? bytes.length;
  const whole = fileSize === bytes.length;
  try {
    return parse(bytes, fileSize, whole);
  } catch (error) {
    if (error instanceof NeedMoreBytes && whole) {
      // Unreachable by construction (need() only asks for more when the buffer is a prefix).
      throw new GgufError(GgufErrorCode.TRUNCATED, "could not read GGUF file - it is truncated.");
    }
    throw error;
  }
}

/**
 * @internal Parses, throwing NeedMoreBytes when `bytes` is a too-short prefix. The file keeps
 * `bytes` when `whole`, and `source` (if given) to read tensor data from on demand.
 */
export function parse(
  bytes: Uint8Array,
  fileSize: number,
  whole: boolean,
  source?: ByteSource,
): GgufFile {
  const c = new Cursor(bytes, fileSize);

  // --- header ---
  c.need(4, "the GGUF magic");
  const magic = c.view.getUint32(0, true);
  c.pos = 4;
  if (magic !== MAGIC) {
    const shown = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(
      " ",
    );
    throw new GgufError(
      GgufErrorCode.BAD_MAGIC,
      `could not read GGUF file - it does not start with the GGUF magic.\nExpected bytes 47 47 55 46 ("GGUF").\nReceived ${shown}.`,
      { offset: 0 },
    );
  }
  const version = c.u32("the GGUF version");
  if (version !== 2 && version !== 3) {
    if ((version & 0xffff) === 0 && version !== 0) {
      throw new GgufError(
        GgufErrorCode.BIG_ENDIAN,
        `could not read GGUF file - its version field reads ${version} (0x${version.toString(16)}), which is a byte-swapped version number: this is a big-endian GGUF.\nOnly little-endian GGUF files are supported; convert the model on a little-endian machine.`,
        { offset: 4 },
      );
    }
    const hint =
      version === 1 ? " GGUF v1 is obsolete; re-convert the model with a current converter." : "";
    throw new GgufError(
      GgufErrorCode.UNSUPPORTED_VERSION,
      `could not read GGUF file - version ${version} is not supported.\nExpected version 2 or 3.${hint}`,
      { offset: 4 },
    );
  }
  const tensorCount = c.count("the tensor count", MAX_TENSOR_COUNT, "tensors");
  const kvCount = c.count("the metadata key count", MAX_KV_COUNT, "keys");
  const minimumHeader = kvCount * MIN_KV_BYTES + tensorCount * MIN_TENSOR_INFO_BYTES;
  if (minimumHeader > c.remainingInFile) {
    throw new GgufError(
      GgufErrorCode.LIMIT_EXCEEDED,
      `could not read GGUF file - it claims ${kvCount} metadata keys and ${tensorCount} tensors, which need at least ${minimumHeader} bytes, but only ${c.remainingInFile} bytes follow the header.\nThe file is corrupt or truncated.`,
      { offset: 8 },
    );
  }

  // --- metadata ---
  const entries = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const keyOffset = c.pos;
    const key = c.string(`metadata key #${i}`, MAX_KEY_BYTES);
    if (key.length === 0) {
      throw new GgufError(
        GgufErrorCode.EMPTY_KEY,
        `could not read metadata key #${i} - it is empty.`,
        {
          offset: keyOffset,
        },
      );
    }
    if (entries.has(key)) {
      throw new GgufError(
        GgufErrorCode.DUPLICATE_KEY,
        `could not read metadata - key "${key}" appears twice (again at offset ${keyOffset}).\nA valid GGUF file has each key once.`,
        { offset: keyOffset },
      );
    }
    const typeOffset = c.pos;
    const type = c.u32(`the value type of "${key}"`);
    if (!isValueType(type)) {
      throw badValueType(key, type, typeOffset);
    }
    entries.set(key, readValue(c, type, key, 0));
  }
  const metadata = new GgufMetadata(entries);

  // --- alignment ---
  let alignment = DEFAULT_ALIGNMENT;
  const alignValue = entries.get("general.alignment");
  if (alignValue !== undefined) {
    if (alignValue.type !== GgufValueType.UINT32) {
      throw new GgufError(
        GgufErrorCode.BAD_ALIGNMENT,
        `could not read GGUF file - "general.alignment" must be a UINT32.\nReceived ${valueTypeName(alignValue.type)}.`,
      );
    }
    alignment = alignValue.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw new GgufError(
        GgufErrorCode.BAD_ALIGNMENT,
        `could not read GGUF file - "general.alignment" is ${alignment}, which is not a power of two.`,
      );
    }
  }

  // --- tensor infos ---
  const raw: {
    info: Omit<GgufTensorInfo, "fileOffset">;
    offsetBig: bigint;
    sizeBig: bigint;
    elements: bigint;
  }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const infoOffset = c.pos;
    const name = readTensorName(c, i);
    if (names.has(name)) {
      throw new GgufError(
        GgufErrorCode.DUPLICATE_TENSOR,
        `could not read tensor info #${i} - tensor name "${name}" is used twice.`,
        { offset: infoOffset },
      );
    }
    names.add(name);
    const dimsOffset = c.pos;
    const nDims = c.u32(`the dimension count of tensor "${name}"`);
    if (nDims > MAX_TENSOR_DIMS) {
      throw new GgufError(
        GgufErrorCode.TOO_MANY_DIMS,
        `could not read tensor "${name}" - it has ${nDims} dimensions.\nExpected at most ${MAX_TENSOR_DIMS}.`,
        { offset: dimsOffset },
      );
    }
    const shapeBig: bigint[] = [];
    let elements = 1n;
    for (let d = 0; d < nDims; d++) {
      const at = c.pos;
      const dim = c.u64(`dimension ${d} of tensor "${name}"`);
      if (dim > SAFE_MAX) {
        throw new GgufError(
          GgufErrorCode.SHAPE_OVERFLOW,
          `could not read tensor "${name}" - dimension ${d} is ${dim}, larger than 2^53.\nThe file is corrupt or hostile.`,
          { offset: at },
        );
      }
      elements *= dim;
      if (elements > INT64_MAX) {
        throw new GgufError(
          GgufErrorCode.SHAPE_OVERFLOW,
          `could not read tensor "${name}" - its element count overflows 64 bits at dimension ${d}.\nThe file is corrupt or hostile.`,
          { offset: at },
        );
      }
      shapeBig.push(dim);
    }
    const typeOffset = c.pos;
    const typeId = c.u32(`the type of tensor "${name}"`);
    const type = findGgmlType(typeId);
    if (type === undefined) {
      throw new GgufError(
        GgufErrorCode.UNKNOWN_TENSOR_TYPE,
        `could not read tensor "${name}" - its ggml type id ${typeId} is unknown.\nKnown ids: 0-3, 6-30, 34-36 (36 = bitnet.cpp I2_S). The file may come from a newer or forked llama.cpp.`,
        { offset: typeOffset },
      );
    }
    const rowLength = shapeBig[0] ?? 1n;
    if (rowLength % BigInt(type.blockSize) !== 0n) {
      throw new GgufError(
        GgufErrorCode.BAD_ROW_LENGTH,
        `could not read tensor "${name}" - its row length ${rowLength} is not a multiple of the ${type.name} block size ${type.blockSize}.`,
        { offset: dimsOffset },
      );
    }
    const sizeBig = tensorByteSizeBig(type, shapeBig);
    if (sizeBig > INT64_MAX) {
      throw new GgufError(
        GgufErrorCode.SHAPE_OVERFLOW,
        `could not read tensor "${name}" - its byte size overflows 64 bits.`,
        { offset: dimsOffset },
      );
    }
    const offsetAt = c.pos;
    const offsetBig = c.u64(`the data offset of tensor "${name}"`);
    if (offsetBig % BigInt(alignment) !== 0n) {
      throw new GgufError(
        GgufErrorCode.TENSOR_MISALIGNED,
        `could not read tensor "${name}" - its data offset ${offsetBig} is not a multiple of the alignment ${alignment}.`,
        { offset: offsetAt },
      );
    }
    raw.push({
      info: {
        name,
        type,
        shape: shapeBig.map(Number),
        elementCount: 0, // set below, after bounds checks guarantee it is a safe integer
        offset: 0,
        byteSize: 0,
        infoOffset,
      },
      offsetBig,
      sizeBig,
      elements,
    });
  }

  // --- data section ---
  const dataOffset = alignUp(c.pos, alignment);
  const tensors: GgufTensorInfo[] = [];
  for (const entry of raw) {
    const start = BigInt(dataOffset) + entry.offsetBig;
    const end = start + entry.sizeBig;
    if (end > BigInt(fileSize)) {
      throw new GgufError(
        GgufErrorCode.TENSOR_OUT_OF_BOUNDS,
        `could not read tensor "${entry.info.name}" - its data (${entry.sizeBig} bytes at file offset ${start}) ends past the end of the file (${fileSize} bytes).\nThe file is truncated or corrupt.`,
        { offset: entry.info.infoOffset },
      );
    }
    tensors.push({
      ...entry.info,
      elementCount: Number(entry.elements),
      offset: Number(entry.offsetBig),
      fileOffset: Number(start),
      byteSize: Number(entry.sizeBig),
    });
  }
  checkOverlaps(tensors);

  return new GgufFile({
    version,
    metadata,
    tensors,
    alignment,
    dataOffset,
    fileSize,
    bytes: whole ? bytes : undefined,
    source,
  });
}

function readTensorName(c: Cursor, index: number): string {
  const at = c.pos;
  const name = c.string(`the name of tensor #${index}`, MAX_STRING_BYTES);
  const byteLength = c.pos - at - 8; // the string's bytes, after its u64 length
  if (byteLength === 0 || byteLength > MAX_TENSOR_NAME_BYTES) {
    throw new GgufError(
      GgufErrorCode.BAD_TENSOR_NAME,
      byteLength === 0
        ? `could not read tensor #${index} - its name is empty.`
        : `could not read tensor #${index} - its name is ${byteLength} bytes long.\nExpected at most ${MAX_TENSOR_NAME_BYTES} bytes (ggml's GGML_MAX_NAME).`,
      { offset: at },
    );
  }
  return name;
}

function badValueType(key: string, type: number, offset: number): GgufError {
  return new GgufError(
    GgufErrorCode.INVALID_VALUE_TYPE,
    `could not read metadata "${key}" - value type ${type} is unknown.\nExpected a GGUF value type id from 0 to 12.`,
    { offset },
  );
}

function readValue(c: Cursor, type: GgufValueType, key: string, depth: number): GgufValue {
  const what = `the value of "${key}"`;
  switch (type) {
    case GgufValueType.UINT8:
      return { type, value: c.u8(what) };
    case GgufValueType.INT8:
      c.need(1, what);
      return { type, value: c.view.getInt8(c.pos++) };
    case GgufValueType.UINT16:
      c.need(2, what);
      c.pos += 2;
      return { type, value: c.view.getUint16(c.pos - 2, true) };
    case GgufValueType.INT16:
      c.need(2, what);
      c.pos += 2;
      return { type, value: c.view.getInt16(c.pos - 2, true) };
    case GgufValueType.UINT32:
      return { type, value: c.u32(what) };
    case GgufValueType.INT32:
      c.need(4, what);
      c.pos += 4;
      return { type, value: c.view.getInt32(c.pos - 4, true) };
    case GgufValueType.FLOAT32:
      c.need(4, what);
      c.pos += 4;
      return { type, value: c.view.getFloat32(c.pos - 4, true) };
    case GgufValueType.FLOAT64:
      c.need(8, what);
      c.pos += 8;
      return { type, value: c.view.getFloat64(c.pos - 8, true) };
    case GgufValueType.UINT64:
      return { type, value: c.u64(what) };
    case GgufValueType.INT64:
      c.need(8, what);
      c.pos += 8;
      return { type, value: c.view.getBigInt64(c.pos - 8, true) };
    case GgufValueType.BOOL:
      return { type, value: readBool(c, what) };
    case GgufValueType.STRING:
      return { type, value: c.string(what, MAX_STRING_BYTES) };
    case GgufValueType.ARRAY:
      return readArray(c, key, depth);
  }
}

function readBool(c: Cursor, what: string): boolean {
  const at = c.pos;
  const b = c.u8(what);
  if (b > 1) {
    throw new GgufError(
      GgufErrorCode.INVALID_BOOL,
      `could not read ${what} - a BOOL must be 0 or 1.\nReceived ${b}.`,
      { offset: at },
    );
  }
  return b === 1;
}

function readArray(c: Cursor, key: string, depth: number): GgufArrayValue {
  const typeAt = c.pos;
  const elementType = c.u32(`the element type of array "${key}"`);
  if (!isValueType(elementType)) {
    throw badValueType(key, elementType, typeAt);
  }
  if (elementType === GgufValueType.ARRAY && depth + 1 >= MAX_ARRAY_NESTING) {
    throw new GgufError(
      GgufErrorCode.LIMIT_EXCEEDED,
      `could not read array "${key}" - arrays are nested more than ${MAX_ARRAY_NESTING} deep.\nThe file is corrupt or hostile.`,
      { offset: typeAt },
    );
  }
  const countAt = c.pos;
  const count = c.count(`the length of array "${key}"`, MAX_ARRAY_LENGTH, "elements");
  // Every element takes at least this many bytes, so a count the file cannot hold is rejected
  // before anything is allocated for it.
  const minElementBytes =
    elementType === GgufValueType.STRING
      ? 8
      : elementType === GgufValueType.ARRAY
        ? 12
        : scalarByteSize(elementType);
  if (count * minElementBytes > c.remainingInFile) {
    throw new GgufError(
      GgufErrorCode.LIMIT_EXCEEDED,
      `could not read array "${key}" - it claims ${count} ${valueTypeName(elementType)} elements (at least ${count * minElementBytes} bytes) but only ${c.remainingInFile} bytes remain in the file.\nThe file is corrupt or truncated.`,
      { offset: countAt },
    );
  }
  const what = `the elements of array "${key}"`;
  const typed = (bytesPer: number): Uint8Array => {
    c.need(count * bytesPer, what);
    // Copy into a fresh, aligned buffer: the source offset may not be aligned for the element type.
    const copy = c.bytes.slice(c.pos, c.pos + count * bytesPer);
    c.pos += count * bytesPer;
    return copy;
  };
  let value: GgufArrayData;
  switch (elementType) {
    case GgufValueType.UINT8:
      value = typed(1);
      break;
    case GgufValueType.INT8:
      value = new Int8Array(typed(1).buffer);
      break;
    case GgufValueType.UINT16:
      value = new Uint16Array(typed(2).buffer);
      break;
    case GgufValueType.INT16:
      value = new Int16Array(typed(2).buffer);
      break;
    case GgufValueType.UINT32:
      value = new Uint32Array(typed(4).buffer);
      break;
    case GgufValueType.INT32:
      value = new Int32Array(typed(4).buffer);
      break;
    case GgufValueType.FLOAT32:
      value = new Float32Array(typed(4).buffer);
      break;
    case GgufValueType.FLOAT64:
      value = new Float64Array(typed(8).buffer);
      break;
    case GgufValueType.UINT64:
      value = new BigUint64Array(typed(8).buffer);
      break;
    case GgufValueType.INT64:
      value = new BigInt64Array(typed(8).buffer);
      break;
    case GgufValueType.BOOL: {
      const out: boolean[] = [];
      for (let i = 0; i < count; i++) {
        out.push(readBool(c, `element ${i} of array "${key}"`));
      }
      value = out;
      break;
    }
    case GgufValueType.STRING:
      value = readStringList(c, key, count);
      break;
    case GgufValueType.ARRAY: {
      const out: GgufArrayValue[] = [];
      for (let i = 0; i < count; i++) {
        out.push(readArray(c, `${key}[${i}]`, depth + 1));
      }
      value = out;
      break;
    }
  }
  return { type: GgufValueType.ARRAY, elementType, value };
}

function checkOverlaps(tensors: GgufTensorInfo[]): void {
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const next = sorted[i]!;
    if (prev.offset + prev.byteSize > next.offset) {
      throw new GgufError(
        GgufErrorCode.TENSOR_OVERLAP,
        `could not read GGUF file - the data of tensors "${prev.name}" (bytes ${prev.offset}..${prev.offset + prev.byteSize}) and "${next.name}" (from byte ${next.offset}) overlap.\nThe file is corrupt.`,
        { offset: next.infoOffset },
      );
    }
  }
}

/** Rounds `x` up to a multiple of `alignment` (a power of two, or any positive integer). */
export function alignUp(x: number, alignment: number): number {
  const rem = x % alignment;
  return rem === 0 ? x : x + (alignment - rem);
}

/**
 * A string array kept as bytes: one pass checks every length and validates the UTF-8 in place,
 * a second copies the bytes into one compact buffer. Nothing is decoded, so a 400k-string
 * vocabulary costs its bytes plus 4 bytes a string instead of a JS string each.
 */
function readStringList(c: Cursor, key: string, count: number): GgufStringList {
  const first = c.pos;
  const ends = new Uint32Array(count);
  let total = 0;
  // Messages are built only on failure: 400k template strings would be 150 MB of garbage.
  let i = 0;
  const what = (): string => `element ${i} of array "${key}"`;
  const lengthOf = (): string => `the length of ${what()}`;
  for (; i < count; i++) {
    const at = c.pos;
    const n = c.length(lengthOf, MAX_STRING_BYTES, "bytes");
    c.need(n, what);
    if (!isWellFormedUtf8(c.bytes, c.pos, c.pos + n)) {
      throw new GgufError(
        GgufErrorCode.INVALID_UTF8,
        `could not read ${what()} - its ${n} bytes at offset ${c.pos} are not valid UTF-8.\nThe file is corrupt.`,
        { offset: c.pos },
      );
    }
    c.pos += n;
    total += n;
    if (total > 0xffffffff) {
      throw new GgufError(
        GgufErrorCode.LIMIT_EXCEEDED,
        `could not read array "${key}" - its strings exceed 4 GiB in all.\nThe file is corrupt or hostile.`,
        { offset: at },
      );
    }
    ends[i] = total;
  }
  const bytes = new Uint8Array(total);
  const source = c.bytes;
  let from = first;
  for (let k = 0; k < count; k++) {
    from += 8;
    // A byte loop: most strings are a few bytes, and a subarray per string would be garbage.
    for (let to = k === 0 ? 0 : ends[k - 1]!, end = ends[k]!; to < end; to++, from++) {
      bytes[to] = source[from]!;
    }
  }
  return new GgufStringList(bytes, ends);
}
