import { GgufError, GgufErrorCode } from "./errors";
import { GgufStringList } from "./string-list";

/** GGUF metadata value type ids (gguf.h `enum gguf_type`). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

const VALUE_TYPE_NAMES: readonly string[] = [
  "UINT8",
  "INT8",
  "UINT16",
  "INT16",
  "UINT32",
  "INT32",
  "FLOAT32",
  "BOOL",
  "STRING",
  "ARRAY",
  "UINT64",
  "INT64",
  "FLOAT64",
];

/** The spec name of a value type id (`"UINT32"`, `"STRING"`, …). */
export function valueTypeName(type: number): string {
  return VALUE_TYPE_NAMES[type] ?? `unknown(${type})`;
}

export function isValueType(type: number): type is GgufValueType {
  return Number.isInteger(type) && type >= 0 && type <= 12;
}

/** Fixed byte size of a scalar value type, or 0 for STRING/ARRAY. */
export function scalarByteSize(type: GgufValueType): number {
  switch (type) {
    case GgufValueType.UINT8:
    case GgufValueType.INT8:
    case GgufValueType.BOOL:
      return 1;
    case GgufValueType.UINT16:
    case GgufValueType.INT16:
      return 2;
    case GgufValueType.UINT32:
    case GgufValueType.INT32:
    case GgufValueType.FLOAT32:
      return 4;
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
    case GgufValueType.FLOAT64:
      return 8;
    default:
      return 0;
  }
}

type NumberValueType =
  | typeof GgufValueType.UINT8
  | typeof GgufValueType.INT8
  | typeof GgufValueType.UINT16
  | typeof GgufValueType.INT16
  | typeof GgufValueType.UINT32
  | typeof GgufValueType.INT32
  | typeof GgufValueType.FLOAT32
  | typeof GgufValueType.FLOAT64;

type BigintValueType = typeof GgufValueType.UINT64 | typeof GgufValueType.INT64;

/**
 * Array payloads: typed arrays for numbers, plain arrays for bools and nested arrays; strings are
 * a plain array when built in memory and a {@link GgufStringList} (bytes, decoded on demand) when
 * read from a file.
 */
export type GgufArrayData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufStringList
  | GgufArrayValue[];

/** An array value (nested arrays are arrays of these). */
export interface GgufArrayValue {
  readonly type: typeof GgufValueType.ARRAY;
  readonly elementType: GgufValueType;
  readonly value: GgufArrayData;
}

/** One metadata value, tagged with its GGUF type so it round-trips exactly. */
export type GgufValue =
  | { readonly type: NumberValueType; readonly value: number }
  | { readonly type: BigintValueType; readonly value: bigint }
  | { readonly type: typeof GgufValueType.BOOL; readonly value: boolean }
  | { readonly type: typeof GgufValueType.STRING; readonly value: string }
  | GgufArrayValue;

/**
 * Constructors for metadata values.
 *
 * @example
 * writer.set("bitnet-b1.58.block_count", gguf.uint32(30));
 * writer.set("tokenizer.ggml.tokens", gguf.stringArray(["<s>", "</s>"]));
 */
export const gguf = {
  uint8: (value: number): GgufValue => ({ type: GgufValueType.UINT8, value }),
  int8: (value: number): GgufValue => ({ type: GgufValueType.INT8, value }),
  uint16: (value: number): GgufValue => ({ type: GgufValueType.UINT16, value }),
  int16: (value: number): GgufValue => ({ type: GgufValueType.INT16, value }),
  uint32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  int32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  float32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  float64: (value: number): GgufValue => ({ type: GgufValueType.FLOAT64, value }),
  uint64: (value: bigint | number): GgufValue => ({
    type: GgufValueType.UINT64,
    value: BigInt(value),
  }),
  int64: (value: bigint | number): GgufValue => ({
    type: GgufValueType.INT64,
    value: BigInt(value),
  }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  string: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  array: (elementType: GgufValueType, value: GgufArrayData): GgufArrayValue => ({
    type: GgufValueType.ARRAY,
    elementType,
    value,
  }),
  stringArray: (value: string[]): GgufArrayValue => ({
    type: GgufValueType.ARRAY,
    elementType: GgufValueType.STRING,
    value,
  }),
  float32Array: (value: Float32Array | number[]): GgufArrayValue => ({
    type: GgufValueType.ARRAY,
    elementType: GgufValueType.FLOAT32,
    value: value instanceof Float32Array ? value : Float32Array.from(value),
  }),
  int32Array: (value: Int32Array | number[]): GgufArrayValue => ({
    type: GgufValueType.ARRAY,
    elementType: GgufValueType.INT32,
    value: value instanceof Int32Array ? value : Int32Array.from(value),
  }),
};

/** Value types whose values are JS numbers. */
function isNumberType(type: GgufValueType): type is NumberValueType {
  return type <= GgufValueType.FLOAT32 || type === GgufValueType.FLOAT64;
}

function isIntegerType(type: GgufValueType): boolean {
  return (
    type <= GgufValueType.INT32 || type === GgufValueType.UINT64 || type === GgufValueType.INT64
  );
}

function describe(value: GgufValue): string {
  return value.type === GgufValueType.ARRAY
    ? `ARRAY of ${valueTypeName(value.elementType)}`
    : valueTypeName(value.type);
}

/**
 * The key/value metadata of a GGUF file, in file order, with typed accessors.
 *
 * `get*` return `undefined` when the key is absent and throw `GGUF_WRONG_TYPE` when it holds
 * another type; `require*` also throw `GGUF_MISSING_KEY` when it is absent.
 */
export class GgufMetadata implements Iterable<[string, GgufValue]> {
  readonly #entries: Map<string, GgufValue>;

  constructor(entries?: Iterable<[string, GgufValue]>) {
    this.#entries = new Map(entries);
  }

  get size(): number {
    return this.#entries.size;
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  get(key: string): GgufValue | undefined {
    return this.#entries.get(key);
  }

  keys(): IterableIterator<string> {
    return this.#entries.keys();
  }

  [Symbol.iterator](): IterableIterator<[string, GgufValue]> {
    return this.#entries.entries();
  }

  /** A string value. */
  getString(key: string): string | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) {
      return undefined;
    }
    if (value.type !== GgufValueType.STRING) {
      throw wrongType(key, "STRING", value);
    }
    return value.value;
  }

  requireString(key: string): string {
    return this.getString(key) ?? missing(key, "STRING");
  }

  /** Any numeric value (64-bit integers only when they fit in a double exactly). */
  getNumber(key: string): number | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) {
      return undefined;
    }
    if (value.type === GgufValueType.UINT64 || value.type === GgufValueType.INT64) {
      if (
        value.value > BigInt(Number.MAX_SAFE_INTEGER) ||
        value.value < BigInt(Number.MIN_SAFE_INTEGER)
      ) {
        throw new GgufError(
          GgufErrorCode.WRONG_TYPE,
          `could not read metadata "${key}" - its value ${value.value} does not fit in a JavaScript number.`,
        );
      }
      return Number(value.value);
    }
    if (value.type === GgufValueType.BOOL || !isNumberType(value.type)) {
      throw wrongType(key, "a number", value);
    }
    return value.value as number;
  }

  requireNumber(key: string): number {
    return this.getNumber(key) ?? missing(key, "a number");
  }

  /** A numeric value that must be a non-negative integer (counts, sizes, ids). */
  getCount(key: string): number | undefined {
    const value = this.#entries.get(key);
    const n = this.getNumber(key);
    if (value === undefined || n === undefined) {
      return undefined;
    }
    if (!isIntegerType(value.type) || !Number.isInteger(n) || n < 0) {
      throw new GgufError(
        GgufErrorCode.WRONG_TYPE,
        `could not read metadata "${key}" - expected a non-negative integer.\nReceived ${describe(value)} ${n}.`,
      );
    }
    return n;
  }

  requireCount(key: string): number {
    return this.getCount(key) ?? missing(key, "a non-negative integer");
  }

  getBoolean(key: string): boolean | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) {
      return undefined;
    }
    if (value.type !== GgufValueType.BOOL) {
      throw wrongType(key, "BOOL", value);
    }
    return value.value;
  }

  /** An array value of any element type. */
  getArray(key: string): GgufArrayValue | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) {
      return undefined;
    }
    if (value.type !== GgufValueType.ARRAY) {
      throw wrongType(key, "ARRAY", value);
    }
    return value;
  }

  /**
   * An array of strings as JS strings. For a file's large arrays (a vocabulary, merges) this
   * decodes every element; {@link getStringList} reads them without decoding.
   */
  getStringArray(key: string): readonly string[] | undefined {
    const value = this.#stringArray(key);
    if (value === undefined) {
      return undefined;
    }
    return value instanceof GgufStringList ? value.toArray() : (value as string[]);
  }

  /** An array of strings as a {@link GgufStringList} (no copy when read from a file). */
  getStringList(key: string): GgufStringList | undefined {
    const value = this.#stringArray(key);
    if (value === undefined) {
      return undefined;
    }
    return value instanceof GgufStringList ? value : GgufStringList.from(value as string[]);
  }

  requireStringList(key: string): GgufStringList {
    return this.getStringList(key) ?? missing(key, "ARRAY of STRING");
  }

  /** The number of elements of an array value, without decoding it. */
  getArrayLength(key: string): number | undefined {
    return this.getArray(key)?.value.length;
  }

  #stringArray(key: string): GgufArrayData | undefined {
    const value = this.getArray(key);
    if (value === undefined) {
      return undefined;
    }
    if (value.elementType !== GgufValueType.STRING) {
      throw wrongType(key, "ARRAY of STRING", value);
    }
    return value.value;
  }

  requireStringArray(key: string): readonly string[] {
    return this.getStringArray(key) ?? missing(key, "ARRAY of STRING");
  }

  /** An array of numbers of any numeric element type except 64-bit integers. */
  getNumberArray(key: string): ArrayLike<number> | undefined {
    const value = this.getArray(key);
    if (value === undefined) {
      return undefined;
    }
    if (value.elementType === GgufValueType.BOOL || !isNumberType(value.elementType)) {
      throw wrongType(key, "ARRAY of numbers", value);
    }
    return value.value as ArrayLike<number>;
  }
}

function wrongType(key: string, expected: string, value: GgufValue): GgufError {
  return new GgufError(
    GgufErrorCode.WRONG_TYPE,
    `could not read metadata "${key}" - it has the wrong type.\nExpected ${expected}.\nReceived ${describe(value)}.`,
  );
}

function missing(key: string, expected: string): never {
  throw new GgufError(
    GgufErrorCode.MISSING_KEY,
    `could not find metadata "${key}" - the file does not have this key.\nExpected ${expected}.`,
  );
}

/** Options for {@link metadataValueToJson}. */
export interface MetadataJsonOptions {
  /** Arrays with more elements than this print as `{array, length}` (default 64). */
  readonly maxArrayLength?: number;
}

/**
 * A JSON-safe rendering of a metadata value: 64-bit integers as numbers when exactly
 * representable and as strings otherwise, non-finite floats as strings, arrays longer than
 * `maxArrayLength` as `{"array": "<element type>", "length": n}`.
 */
export function metadataValueToJson(value: GgufValue, options: MetadataJsonOptions = {}): unknown {
  const maxArrayLength = options.maxArrayLength ?? 64;
  switch (value.type) {
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
      return bigintToJson(value.value);
    case GgufValueType.ARRAY:
      return arrayToJson(value, maxArrayLength);
    case GgufValueType.FLOAT32:
      return floatToJson(shortestFloat32(value.value));
    case GgufValueType.FLOAT64:
      return floatToJson(value.value);
    default:
      return value.value;
  }
}

function floatToJson(value: number): number | string {
  return Number.isFinite(value) ? value : String(value);
}

/**
 * The shortest decimal that reads back as the same f32 (so 1e-5 stored as f32 prints as 1e-5,
 * not 0.000009999999747378752).
 */
export function shortestFloat32(value: number): number {
  if (!Number.isFinite(value)) {
    return value;
  }
  for (let digits = 1; digits <= 9; digits++) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) {
      return candidate;
    }
  }
  return value;
}

function bigintToJson(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

function arrayToJson(value: GgufArrayValue, maxArrayLength: number): unknown {
  const data = value.value;
  if (data.length > maxArrayLength) {
    return { array: valueTypeName(value.elementType), length: data.length };
  }
  if (data instanceof GgufStringList) {
    return data.toArray();
  }
  const out: unknown[] = [];
  for (let i = 0; i < data.length; i++) {
    const element = data[i];
    if (typeof element === "bigint") {
      out.push(bigintToJson(element));
    } else if (typeof element === "number") {
      out.push(
        floatToJson(
          value.elementType === GgufValueType.FLOAT32 ? shortestFloat32(element) : element,
        ),
      );
    } else if (typeof element === "object" && element !== null) {
      out.push(arrayToJson(element, maxArrayLength));
    } else {
      out.push(element);
    }
  }
  return out;
}
