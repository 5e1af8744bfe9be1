/**
 * Backend selection. Backends are loaded by name with a dynamic import, so engine-core never
 * depends on a native package; "auto" tries the fastest available and falls back, with a logged
 * reason, to the pure-TypeScript reference backend.
 */
import type { Backend } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";
import { ReferenceBackend } from "./reference/backend";

export type BackendName = "auto" | "cpu" | "reference" | "reference-f64";

/** Order "auto" tries: native CPU kernels, then the reference backend. */
export const AUTO_ORDER: readonly BackendName[] = ["cpu", "reference"];

export interface SelectBackendOptions {
  readonly threads?: number;
  /** Receives one line per backend that was skipped and why. */
  readonly onLog?: (message: string) => void;
}

interface BackendModule {
  createBackend(options: { threads?: number }): Promise<Backend> | Backend;
}

async function loadNative(packageName: string, options: SelectBackendOptions): Promise<Backend> {
  let mod: BackendModule;
  try {
    mod = (await import(/* @vite-ignore */ packageName)) as BackendModule;
  } catch (error) {
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      `${packageName} is not installed (${(error as Error).message.split("\n")[0]})`,
      { cause: error },
    );
  }
  return mod.createBackend(options.threads === undefined ? {} : { threads: options.threads });
}

/** Resolves a backend name to a Backend. */
export async function selectBackend(
  name: BackendName = "auto",
  options: SelectBackendOptions = {},
): Promise<Backend> {
  switch (name) {
    case "reference":
      return new ReferenceBackend();
    case "reference-f64":
      return new ReferenceBackend({ numerics: "f64" });
    case "cpu":
      return loadNative("@bitnet-ts/kernels-cpu", options);
    case "auto": {
      for (const candidate of AUTO_ORDER) {
        if (candidate === "reference") {
          return new ReferenceBackend();
        }
        try {
          return await selectBackend(candidate, options);
        } catch (error) {
          options.onLog?.(
            `backend "${candidate}" unavailable: ${(error as Error).message}; trying the next one`,
          );
        }
      }
      return new ReferenceBackend();
    }
    default:
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not select backend "${String(name)}" - expected one of auto, cpu, reference, reference-f64.`,
      );
  }
}
