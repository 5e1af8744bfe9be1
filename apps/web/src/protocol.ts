/** Messages between the page and the engine's Web Worker. */

/** Where a model comes from: a file the person picked, or a URL (read with HTTP range requests). */
export type ModelInput =
  | { readonly kind: "file"; readonly file: File }
  | { readonly kind: "url"; readonly url: string };

/** "auto": WebGPU when `navigator.gpu` gives an adapter, else the TypeScript reference backend. */
export type BackendChoice = "auto" | "webgpu" | "reference";

export type ToWorker =
  | { readonly type: "load"; readonly input: ModelInput; readonly backend: BackendChoice }
  | {
      readonly type: "generate";
      readonly id: number;
      /**
       * "complete": the prompt as is (like `bitnet run -p`); "chat": the next user message of the
       * conversation, through the model's chat template (the worker keeps the conversation).
       */
      readonly mode: "complete" | "chat";
      readonly prompt: string;
      readonly maxTokens: number;
      readonly temperature: number;
      readonly seed: number | undefined;
    }
  | { readonly type: "stop"; readonly id: number }
  /** Starts a new conversation (forgets the chat so far). */
  | { readonly type: "reset" };

export interface ModelInfo {
  readonly name: string;
  readonly backend: string;
  /** Why the backend is the one it is (e.g. "no WebGPU adapter: …"). */
  readonly backendNote: string | undefined;
  readonly architecture: string;
  readonly parameters: number;
  readonly contextLength: number;
  readonly loadMs: number;
}

export interface GenerationStats {
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly promptMs: number;
  readonly generationMs: number;
  /** From the start of the request to the first generated token. */
  readonly firstTokenMs: number;
  readonly tokensPerSecond: number;
  readonly finishReason: string;
}

export type FromWorker =
  | {
      readonly type: "progress";
      readonly phase: string;
      readonly done: number;
      readonly total: number;
    }
  | { readonly type: "ready"; readonly info: ModelInfo }
  | { readonly type: "token"; readonly id: number; readonly text: string }
  | {
      readonly type: "done";
      readonly id: number;
      readonly stats: GenerationStats;
      readonly tokens: readonly number[];
    }
  | { readonly type: "error"; readonly id: number | undefined; readonly message: string };
