/**
 * `--draft lookup|draft.gguf` as a library call: the prompt-lookup drafter, or a draft model
 * loaded beside the target and checked to share its vocabulary token for token.
 */
import type { BackendName, BackendOptions } from "@bitnet-ts/engine-core";
import { type Drafter, ModelDrafter, PromptLookupDrafter } from "./draft";
import { GenerationError, GenerationErrorCode } from "./errors";
import { TextGenerator } from "./generator";

export interface LoadDrafterOptions {
  /** Most tokens drafted per step (default 8 for lookup, 6 for a draft model). */
  readonly maxDraft?: number;
  /** Backend of a draft model (default: the target's). */
  readonly backend?: BackendName;
  readonly backendOptions?: BackendOptions;
  readonly onLog?: (message: string) => void;
}

export interface LoadedDrafter {
  readonly drafter: Drafter;
  /** Frees a draft model (nothing for lookup). */
  dispose(): Promise<void>;
}

/**
 * "lookup" → PromptLookupDrafter; anything else is a GGUF path loaded as a ModelDrafter with
 * the target's context length. Throws GENERATION_BAD_OPTION when the vocabularies differ.
 */
export async function loadDrafter(
  spec: string,
  target: TextGenerator,
  options: LoadDrafterOptions = {},
): Promise<LoadedDrafter> {
  const maxDraft = options.maxDraft === undefined ? {} : { maxDraft: options.maxDraft };
  if (spec === "lookup") {
    return { drafter: new PromptLookupDrafter(maxDraft), dispose: async () => {} };
  }
  const draft = await TextGenerator.load(spec, {
    backend: options.backend ?? (target.model.backendName as BackendName),
    contextLength: target.model.contextLength,
    ...(options.backendOptions === undefined ? {} : { backendOptions: options.backendOptions }),
    ...(options.onLog === undefined ? {} : { onLog: options.onLog }),
  });
  const a = target.tokenizer.vocab.tokens;
  const b = draft.tokenizer.vocab.tokens;
  const differs = a.firstDifference(b);
  if (differs !== -1) {
    await draft.dispose();
    throw new GenerationError(
      GenerationErrorCode.BAD_OPTION,
      `could not draft with ${spec} - its vocabulary differs from the model's (${b.length} against ${a.length} tokens; first difference at id ${differs}); a draft model must share the model's tokenizer.`,
    );
  }
  return {
    drafter: new ModelDrafter(draft.model, {
      ...maxDraft,
      // The file name without folders or .gguf (no node:path: this package runs in browsers too).
      label: (spec.split(/[\\/]/).pop() ?? spec).replace(/\.gguf$/i, ""),
    }),
    dispose: () => draft.dispose(),
  };
}
