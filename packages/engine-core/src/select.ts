/**
 * Backend selection over an open registry. Backends are loaded by name with a dynamic import, so
 * engine-core never depends on a native package; any package can register another backend. "auto"
 * tries the registered backends best first (skipping those whose cheap precheck says they cannot
 * run here) and falls back, with a logged reason, to the pure-TypeScript reference backend.
 */
import { type DeviceReport, probeDevice } from "@bitnet-ts/device-probe";
import type { KernelRules } from "@bitnet-ts/receipts";
import type { Backend, BackendModule, BackendOptions } from "./backend";
import { EngineError, EngineErrorCode } from "./errors";
import { REFERENCE_KERNEL_RULES, ReferenceBackend } from "./reference/backend";

/**
 * "auto", "reference", "reference-f64", or any registered backend ("cpu", "cuda", "webgpu", …).
 * The string & {} keeps editor completion for the well-known names.
 */
export type BackendName =
  | "auto"
  | "reference"
  | "reference-f64"
  | "cpu"
  | "cuda"
  | "webgpu"
  | "metal"
  | (string & {});

/** A function that loads a backend package on demand (registered by the app that installs it). */
export type BackendLoader = () => Promise<BackendModule>;

export interface BackendRegistration {
  readonly name: string;
  readonly load: BackendLoader;
  /** Place in "auto": higher is tried first (cuda 300, webgpu 200, cpu 100). */
  readonly priority: number;
  /**
   * A cheap check that needs no package load (e.g. "no NVIDIA GPU"): the reason this backend
   * cannot run here, or undefined. "auto" skips such a backend quietly: nothing to explain.
   */
  readonly precheck?: (device: DeviceReport) => string | undefined;
  /** Other names that select this backend (e.g. "metal" for webgpu). */
  readonly aliases?: readonly string[];
}

export interface SelectBackendOptions {
  /** Options per backend name, e.g. `{ cpu: { threads: 4 } }`; each backend gets its own entry. */
  readonly backendOptions?: BackendOptions;
  /** Receives one line per backend that was skipped and why. */
  readonly onLog?: (message: string) => void;
}

/** Imports a package by name from engine-core's own resolution (the app's dependency tree). */
function importPackage(packageName: string): BackendLoader {
  return () => import(/* @vite-ignore */ packageName) as Promise<BackendModule>;
}

function wellKnown(): BackendRegistration[] {
  return [
    {
      name: "cuda",
      load: importPackage("@bitnet-ts/kernels-cuda"),
      priority: 300,
      precheck: (d) => (d.cuda.gpuPresent ? undefined : d.cuda.reason),
    },
    {
      name: "webgpu",
      load: importPackage("@bitnet-ts/kernels-webgpu"),
      priority: 200,
      aliases: ["metal"],
      // Elsewhere WebGPU is asked for by name: "auto" prefers CUDA or the native CPU kernels.
      precheck: (d) =>
        d.platform === "darwin" ? undefined : "auto uses WebGPU on macOS only (Metal)",
    },
    { name: "cpu", load: importPackage("@bitnet-ts/kernels-cpu"), priority: 100 },
  ];
}

const registry = new Map<string, BackendRegistration>(wellKnown().map((r) => [r.name, r]));

/**
 * Registers a backend, or replaces where a well-known one is loaded from. Apps that depend on a
 * backend package register it so engine-core loads it from the app's dependency tree.
 *
 * @example
 * registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));
 * registerBackend({ name: "my-npu", load: () => import("my-npu-backend"), priority: 250 });
 */
export function registerBackend(registration: BackendRegistration): void;
export function registerBackend(name: string, loader: BackendLoader): void;
export function registerBackend(
  nameOrRegistration: string | BackendRegistration,
  loader?: BackendLoader,
): void {
  if (typeof nameOrRegistration === "string") {
    const known = registry.get(nameOrRegistration);
    registry.set(nameOrRegistration, {
      ...(known ?? { priority: 0 }),
      name: nameOrRegistration,
      load: loader!,
    });
    return;
  }
  if (["auto", "reference", "reference-f64"].includes(nameOrRegistration.name)) {
    throw new EngineError(
      EngineErrorCode.BAD_OPTION,
      `could not register backend "${nameOrRegistration.name}" - that name is built in.`,
    );
  }
  registry.set(nameOrRegistration.name, nameOrRegistration);
}

/** Restores the registry to the well-known backends (for tests). */
export function resetBackendRegistry(): void {
  registry.clear();
  for (const r of wellKnown()) {
    registry.set(r.name, r);
  }
}

/** The registered backends, best first ("auto" tries them in this order, then "reference"). */
export function registeredBackends(): BackendRegistration[] {
  return [...registry.values()].sort((a, b) => b.priority - a.priority);
}

function resolve(name: string): BackendRegistration | undefined {
  return registry.get(name) ?? [...registry.values()].find((r) => r.aliases?.includes(name));
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
}

/** Loads a registered backend's package (no native code runs unless the package does so on import). */
export async function loadBackendModule(name: string): Promise<BackendModule> {
  const registration = resolve(name);
  if (registration === undefined) {
    throw unknownBackend(name);
  }
  try {
    return await registration.load();
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      code === "ERR_MODULE_NOT_FOUND"
        ? `backend "${registration.name}" is not installed (${firstLine(error)})`
        : `backend "${registration.name}" failed to load (${firstLine(error)})`,
      { cause: error },
    );
  }
}

/**
 * The kernel-count rules receipts of a backend are verified against: built in for the reference
 * backends, else the backend package's `kernelRules` (the package is imported; nothing runs).
 */
export async function kernelRulesFor(name: string): Promise<KernelRules> {
  if (name === "reference" || name === "reference-f64") {
    return REFERENCE_KERNEL_RULES;
  }
  const mod = await loadBackendModule(name);
  if (mod.kernelRules === undefined) {
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      `backend "${name}" declares no kernel rules.`,
    );
  }
  return mod.kernelRules;
}

function unknownBackend(name: string): EngineError {
  const names = ["auto", ...registeredBackends().map((r) => r.name), "reference", "reference-f64"];
  return new EngineError(
    EngineErrorCode.BACKEND_UNAVAILABLE,
    `could not select backend "${name}" - expected one of ${names.join(", ")}.`,
  );
}

async function createNamed(name: string, options: SelectBackendOptions): Promise<Backend> {
  const registration = resolve(name);
  if (registration === undefined) {
    throw unknownBackend(name);
  }
  const mod = await loadBackendModule(registration.name);
  const own = options.backendOptions?.[registration.name] ?? {};
  try {
    return await mod.createBackend(own);
  } catch (error) {
    throw new EngineError(
      EngineErrorCode.BACKEND_UNAVAILABLE,
      `backend "${registration.name}" cannot run here (${firstLine(error)})`,
      { cause: error },
    );
  }
}

/** The order "auto" tries here: registered backends that pass their precheck, then "reference". */
export function autoOrder(device: DeviceReport = probeDevice()): string[] {
  return [
    ...registeredBackends()
      .filter((r) => r.precheck?.(device) === undefined)
      .map((r) => r.name),
    "reference",
  ];
}

/**
 * Says that "auto" ended on the reference backend: through `onLog` when the caller listens, else
 * as a process warning (console.warn where there is no `process`), because running 10-100×
 * slower without a word is worse than a line on stderr.
 */
export function logFallback(onLog: ((line: string) => void) | undefined, line: string): void {
  if (onLog !== undefined) {
    onLog(line);
    return;
  }
  const proc = (globalThis as { process?: { emitWarning?: (m: string, type: string) => void } })
    .process;
  if (typeof proc?.emitWarning === "function") {
    proc.emitWarning(line, "BitnetBackendFallback");
  } else {
    console.warn(`bitnet-ts: ${line}`);
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
    case "auto": {
      const order = autoOrder();
      for (const [i, candidate] of order.entries()) {
        if (candidate === "reference") {
          break;
        }
        try {
          return await createNamed(candidate, options);
        } catch (error) {
          const next = order[i + 1]!;
          const line = `${(error as Error).message}; ${next === "reference" ? 'using "reference", the slow TypeScript reference backend' : `trying "${next}"`}`;
          if (next === "reference") {
            logFallback(options.onLog, line);
          } else {
            options.onLog?.(line);
          }
        }
      }
      return new ReferenceBackend();
    }
    default:
      return createNamed(name, options);
  }
}

export interface BackendStatus {
  readonly name: string;
  readonly available: boolean;
  /** Why it cannot run here (when not available). */
  readonly reason?: string;
  /** What it runs on (when available). */
  readonly description?: ReturnType<Backend["describe"]>;
}

/**
 * Whether each registered backend can run here, by really loading its package and creating it
 * (what `bitnet info` shows): a GPU listed by the driver does not make a backend available.
 */
export async function probeBackends(options: SelectBackendOptions = {}): Promise<BackendStatus[]> {
  const out: BackendStatus[] = [];
  for (const r of registeredBackends()) {
    try {
      const backend = await createNamed(r.name, options);
      out.push({ name: r.name, available: true, description: backend.describe() });
    } catch (error) {
      out.push({ name: r.name, available: false, reason: (error as Error).message });
    }
  }
  const reference = new ReferenceBackend();
  out.push({ name: "reference", available: true, description: reference.describe() });
  return out;
}
