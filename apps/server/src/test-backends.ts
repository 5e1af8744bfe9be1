/**
 * Backends for the server's tests (not exported by the package): the reference backend behind
 * gates the test opens — compile waits on one, every step on another — and, optionally, with a
 * small KV budget, so a test can hold a load or a generation in progress and watch the server.
 */
import {
  type Backend,
  type CompiledModel,
  REFERENCE_KERNEL_RULES,
  ReferenceBackend,
  registerBackend,
} from "@bitnet-ts/engine-core";

/** A promise a test opens (and may close again). */
export class Gate {
  #open = false;
  #waiters: (() => void)[] = [];

  constructor(open: boolean) {
    this.#open = open;
  }

  wait(): Promise<void> {
    return this.#open ? Promise.resolve() : new Promise((resolve) => this.#waiters.push(resolve));
  }

  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) {
      w();
    }
  }

  close(): void {
    this.#open = false;
  }
}

export interface GatedReference {
  /** compile() waits for it. */
  readonly compile: Gate;
  /** Every step waits for it. */
  readonly step: Gate;
  /** Resolves once compile() was called: a load is in progress. */
  readonly compiling: Promise<void>;
}

/**
 * Registers the reference backend under `name`, gated. With `kvBudgetTokens`, capacity() says
 * the KV budget holds that many tokens. "auto" never picks it (its precheck says so).
 */
export function registerGatedReference(
  name: string,
  options: { compileOpen?: boolean; stepOpen?: boolean; kvBudgetTokens?: number } = {},
): GatedReference {
  const compile = new Gate(options.compileOpen ?? true);
  const step = new Gate(options.stepOpen ?? true);
  let started!: () => void;
  const compiling = new Promise<void>((resolve) => {
    started = resolve;
  });
  const wrap = (inner: CompiledModel): CompiledModel =>
    new Proxy(inner, {
      get(target, prop) {
        if (prop === "step") {
          return async (...args: Parameters<CompiledModel["step"]>) => {
            await step.wait();
            return target.step(...args);
          };
        }
        if (prop === "capacity" && options.kvBudgetTokens !== undefined) {
          const tokens = options.kvBudgetTokens;
          return () => {
            const c = target.capacity();
            return { ...c, kvBudgetBytes: tokens * c.kvBytesPerToken };
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const backend = (): Backend => {
    const inner = new ReferenceBackend();
    return {
      name,
      needsTensorData: inner.needsTensorData,
      batchInvariance: inner.batchInvariance,
      describe: () => inner.describe(),
      async compile(model, compileOptions) {
        started();
        await compile.wait();
        return wrap(await inner.compile(model, compileOptions));
      },
    };
  };
  registerBackend({
    name,
    priority: 0,
    load: async () => ({ createBackend: backend, kernelRules: REFERENCE_KERNEL_RULES }),
    precheck: () => "a test backend, selected by name only",
  });
  return { compile, step, compiling };
}
