/**
 * `bitnet inspect <model.gguf> [--json]`: the header of a GGUF file, like gguf-dump — metadata
 * (long arrays summarised) and a table of tensors. Reads only the header, however large the file.
 */
import {
  type GgufFile,
  GgufStringList,
  type GgufValue,
  GgufValueType,
  metadataValueToJson,
  readGgufFile,
  shortestFloat32,
  valueTypeName,
} from "@bitnet-ts/gguf";
import { formatBytes, formatTable } from "../table";

/** The `--json` document. */
export interface InspectJson {
  readonly version: number;
  readonly metadata: Record<string, unknown>;
  readonly tensors: { name: string; type: string; shape: number[]; offset: number; size: number }[];
}

export function inspectJson(file: GgufFile): InspectJson {
  const metadata: Record<string, unknown> = {};
  for (const [key, value] of file.metadata) {
    metadata[key] = metadataValueToJson(value, { maxArrayLength: 64 });
  }
  return {
    version: file.version,
    metadata,
    tensors: file.tensors.map((t) => ({
      name: t.name,
      type: t.type.name,
      shape: [...t.shape],
      offset: t.fileOffset,
      size: t.byteSize,
    })),
  };
}

const PREVIEW_ITEMS = 6;
const MAX_STRING_CHARS = 120;

function previewValue(value: GgufValue): string {
  if (value.type === GgufValueType.ARRAY) {
    const data = value.value;
    const items = Array.from({ length: Math.min(PREVIEW_ITEMS, data.length) }, (_, i) => {
      const element = data instanceof GgufStringList ? data.get(i) : data[i];
      if (typeof element === "string") {
        return JSON.stringify(truncate(element, 24));
      }
      if (typeof element === "object" && element !== null) {
        return `[${element.value.length} × ${valueTypeName(element.elementType)}]`;
      }
      return String(
        typeof element === "number" && value.elementType === GgufValueType.FLOAT32
          ? shortestFloat32(element)
          : element,
      );
    });
    const more = data.length > PREVIEW_ITEMS ? `, … (${data.length} items)` : "";
    return `[${items.join(", ")}${more}]`;
  }
  if (value.type === GgufValueType.STRING) {
    return JSON.stringify(truncate(value.value, MAX_STRING_CHARS));
  }
  if (value.type === GgufValueType.FLOAT32) {
    return String(shortestFloat32(value.value));
  }
  return String(value.value);
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function typeLabel(value: GgufValue): string {
  return value.type === GgufValueType.ARRAY
    ? `${valueTypeName(value.elementType)}[${value.value.length}]`
    : valueTypeName(value.type);
}

export function inspectText(path: string, file: GgufFile): string {
  const weights = file.tensors.reduce((sum, t) => sum + t.byteSize, 0);
  const params = file.tensors.reduce((sum, t) => sum + t.elementCount, 0);
  const typeCounts = new Map<string, number>();
  for (const t of file.tensors) {
    typeCounts.set(t.type.name, (typeCounts.get(t.type.name) ?? 0) + 1);
  }
  const summary = [
    `${path}: GGUF v${file.version}, ${formatBytes(file.fileSize)}`,
    `${file.metadata.size} metadata keys, ${file.tensors.length} tensors (${[...typeCounts].map(([t, n]) => `${n} ${t}`).join(", ")})`,
    `${(params / 1e6).toFixed(2)} M parameters, ${formatBytes(weights)} of tensor data at offset ${file.dataOffset}, alignment ${file.alignment}`,
  ];
  const metadata = formatTable(
    [{ header: "key" }, { header: "type" }, { header: "value" }],
    [...file.metadata].map(([key, value]) => [key, typeLabel(value), previewValue(value)]),
  );
  const tensors = formatTable(
    [
      { header: "#", align: "right" },
      { header: "name" },
      { header: "type" },
      { header: "shape" },
      { header: "bytes", align: "right" },
    ],
    file.tensors.map((t, i) => [
      String(i),
      t.name,
      t.type.name,
      `[${t.shape.join(", ")}]`,
      String(t.byteSize),
    ]),
  );
  return `${summary.join("\n")}\n\n${metadata}\n\n${tensors}\n`;
}

export async function runInspect(path: string, options: { json: boolean }): Promise<string> {
  const file = await readGgufFile(path);
  return options.json ? `${JSON.stringify(inspectJson(file), null, 2)}\n` : inspectText(path, file);
}
