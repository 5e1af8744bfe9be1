/** The architecture registry, keyed by `general.architecture`. */
import { EngineError, EngineErrorCode } from "../errors";
import { bitnet } from "./bitnet";
import { bitnetB158 } from "./bitnet-b1.58";
import type { Architecture } from "./types";

export const ARCHITECTURES: readonly Architecture[] = [bitnetB158, bitnet];

export function findArchitecture(name: string): Architecture {
  const arch = ARCHITECTURES.find((a) => a.names.includes(name));
  if (arch === undefined) {
    const known = ARCHITECTURES.flatMap((a) => a.names).join(", ");
    throw new EngineError(
      EngineErrorCode.UNSUPPORTED_ARCH,
      `could not load the model - architecture "${name}" is not supported.\nSupported: ${known}.`,
    );
  }
  return arch;
}

export type { Architecture, ArchOptions, TensorSpec } from "./types";
