/**
 * Backend selection. Backends are loaded by name with a dynamic import, so engine-core never
 * depends on a native package; "auto" asks device-probe what the machine has, tries the best
 * backend first and falls back, with a logged reason, to the pure-TypeScript reference backend.
 */
import { autoBackendOrder, probeDevice } from "@bitnet-ts/device-probe";
import type { Backend } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";
import { ReferenceBackend } from "./reference/backend";

export type BackendName = "auto" | "cuda" | "metal" | "cpu" | "reference" | "reference-f64";

/**
 * The order "auto" tries, from device-probe: CUDA when a GPU is usable, Metal on macOS, the
 * native CPU kernels, then the reference backend (always available).
 */
export function autoOrder(): BackendName[] {
  return autoBackendOrder(probeDevice());
}

/**
 * Options a native backend understands beyond the thread count (e.g. the CPU backend's `mmap`,
 * `headQ8_0`, `kernelPath`); the reference backends ignore them.
 */
export type NativeBackendOptions = Readonly<Record<string, unknown>>;

export interface SelectBackendOptions {
  readonly threads?: number;
  readonly backendOptions?: NativeBackendOptions;
  /** Receives one line per backend that was skipped and why. */
  readonly onLog?: (message: string) => void;
}

interface BackendModule {
  createBackend(options: { threads?: number } & NativeBackendOptions): Promise<Backend> | Backend;
}

/** A function that loads a backend package on demand (registered by the app that installs it). */
export type BackendLoader = () => Promise<BackendModule>;

const registry = new Map<string, BackendLoader>();

/**
 * Registers where a native backend package comes from. Apps that depend on e.g.
 * `@bitnet-ts/kernels-cpu` register it so engine-core can load it from the app's dependency tree:
 *
 * @example
 * registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));
 */
export function registerBackend(name: "cpu" | "cuda" | "metal", loader: BackendLoader): void {
  registry.set(name, loader);
}

const PACKAGES: Record<string, string> = {
  "@bitnet-ts/kernels-cpu": "cpu",
  "@bitnet-ts/kernels-cuda": "cuda",
  "@bitnet-ts/kernels-metal": "metal",
};

async function loadNative(packageName: string, options: SelectBackendOptions): Promise<Backend> {
  const registered = registry.get(PACKAGES[packageName] ?? "");
  if (registered !== undefined) {
    let mod: BackendModule;
    try {
      mod = await registered();
    } catch (error) {
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `${packageName} failed to load (${(error as Error).message.split("\n")[0]})`,
        {
          cause: error,
        },
      );
    }
    return createFrom(packageName, mod, options);
  }
  let mod: BackendModule;
  try {
    mod = (await import(/* @vite-ignore */ packageName)) as BackendModule;
  } catch (error) {
    const missing = (error as { code?: string }).code === "ERR_MODULE_NOT_FOUND";
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      missing
        ? `${packageName} is not installed`
        : `${packageName} failed to load (${(error as Error).message.split("\n")[0]})`,
      { cause: error },
    );
  }
  return createFrom(packageName, mod, options);
}

async function createFrom(
  packageName: string,
  mod: BackendModule,
  options: SelectBackendOptions,
): Promise<Backend> {
  try {
    return await mod.createBackend({
      ...options.backendOptions,
      ...(options.threads === undefined ? {} : { threads: options.threads }),
    });
  } catch (error) {
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      `${packageName} cannot run here (${(error as Error).message.split("\n")[0]})`,
      {
        cause: error,
      },
    );
  }
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
    case "cuda":
      return loadNative("@bitnet-ts/kernels-cuda", options);
    case "metal":
      return loadNative("@bitnet-ts/kernels-metal", options);
    case "auto": {
      const order = autoOrder();
      for (const [i, candidate] of order.entries()) {
        if (candidate === "reference") {
          return new ReferenceBackend();
        }
        try {
          return await selectBackend(candidate, options);
        } catch (error) {
          options.onLog?.(
            `backend "${candidate}" unavailable (${(error as Error).message}); using "${order[i + 1]}"`,
          );
        }
      }
      return new ReferenceBackend();
    }
    default:
      throw new EngineError(
        EngineErrorCode.BACKEND_UNAVAILABLE,
        `could not select backend "${String(name)}" - expected one of auto, cuda, metal, cpu, reference, reference-f64.`,
      );
  }
}
