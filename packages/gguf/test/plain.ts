import { type GgufArrayValue, type GgufValue, GgufValueType } from "../src/metadata";
import { GgufStringList } from "../src/string-list";

/** A read value with its string lists turned into arrays, to compare with the values written. */
export function plain(value: GgufValue | undefined): GgufValue | undefined {
  if (value === undefined || value.type !== GgufValueType.ARRAY) {
    return value;
  }
  const data = value.value;
  if (data instanceof GgufStringList) {
    return { ...value, value: data.toArray() };
  }
  if (value.elementType === GgufValueType.ARRAY) {
    return { ...value, value: (data as GgufArrayValue[]).map((v) => plain(v) as GgufArrayValue) };
  }
  return value;
}
