/**
 * The engine, in a Web Worker so that loading and generating never freeze the page: reads the
 * GGUF from a File or a URL (HTTP range requests; never the whole file in one buffer), compiles
 * it on WebGPU when the browser gives an adapter, else on the TypeScript reference backend, and
 * streams generated text back.
 */
import {
  type CompiledModel,
  ReferenceBackend,
  readModelDescriptionFrom,
} from "@bitnet-ts/engine-core";
import { ChatSession, TextGenerator } from "@bitnet-ts/generation";
import { type ByteSource, blobSource, openHttpSource } from "@bitnet-ts/gguf";
import { WebGpuBackend } from "@bitnet-ts/kernels-webgpu";
import { Tokenizer } from "@bitnet-ts/tokenizers";
import type { BackendChoice, FromWorker, ModelInput, ToWorker } from "./protocol";

/** The context a page session uses at most (the KV cache and the reference backend's memory). */
const CONTEXT_LIMIT = 2048;

let generator: TextGenerator | undefined;
let chat: ChatSession | undefined;
let gpu: WebGpuBackend | undefined;
let running: { id: number; controller: AbortController } | undefined;

function post(message: FromWorker): void {
  (self as unknown as Worker).postMessage(message);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function openSource(input: ModelInput): Promise<ByteSource> {
  return input.kind === "file" ? blobSource(input.file) : openHttpSource(input.url);
}

/** The name of a software (CPU-emulated) adapter, or undefined for a real GPU. */
function softwareAdapter(backend: WebGpuBackend): string | undefined {
  const r = backend.gpu.report;
  const text = `${r.vendor} ${r.architecture} ${r.device} ${r.description}`.toLowerCase();
  const known = ["swiftshader", "llvmpipe", "lavapipe", "warp"].find((name) => text.includes(name));
  return (
    known ??
    (backend.gpu.adapter.info.isFallbackAdapter === true ? "a fallback adapter" : undefined)
  );
}

async function compile(
  description: Awaited<ReturnType<typeof readModelDescriptionFrom>>,
  backend: BackendChoice,
  contextLength: number,
): Promise<{ model: CompiledModel; note: string | undefined }> {
  const onProgress = ({ phase, done, total }: { phase: string; done: number; total: number }) =>
    post({ type: "progress", phase, done, total });
  let note: string | undefined;
  if (backend !== "reference") {
    try {
      gpu ??= await WebGpuBackend.create();
      const software = softwareAdapter(gpu);
      if (backend === "auto" && software !== undefined) {
        // A CPU emulating a GPU (SwiftShader, llvmpipe) runs these kernels far slower than the
        // reference backend runs on the same CPU (measured in headless Chromium: 0.8 vs 14.6 t/s).
        const model = await new ReferenceBackend().compile(description, {
          contextLength,
          onProgress,
        });
        return {
          model,
          note: `This browser's WebGPU adapter is a software renderer (${software}), slower than the TypeScript reference backend that runs instead; pick WebGPU above to use it anyway.`,
        };
      }
      return { model: await gpu.compile(description, { contextLength, onProgress }), note };
    } catch (error) {
      if (backend === "webgpu") {
        throw error;
      }
      note = `WebGPU could not run here (${messageOf(error).split("\n")[0]}); the TypeScript reference backend runs instead, and it is slow.`;
    }
  }
  const model = await new ReferenceBackend().compile(description, { contextLength, onProgress });
  return {
    model,
    note:
      note ??
      (backend === "reference"
        ? "The TypeScript reference backend is slow: it is the engine's oracle."
        : undefined),
  };
}

async function load(input: ModelInput, backend: BackendChoice): Promise<void> {
  const started = performance.now();
  running?.controller.abort();
  await generator?.model.dispose();
  generator = undefined;
  chat = undefined;
  post({ type: "progress", phase: "header", done: 0, total: 1 });
  const source = await openSource(input);
  const description = await readModelDescriptionFrom(source);
  post({ type: "progress", phase: "header", done: 1, total: 1 });
  const contextLength = Math.min(description.hparams.contextLength, CONTEXT_LIMIT);
  const { model, note } = await compile(description, backend, contextLength);
  const tokenizer = Tokenizer.fromGguf(description.file.metadata);
  generator = new TextGenerator(model, tokenizer);
  chat = new ChatSession(generator);
  let parameters = 0;
  for (const t of description.tensors.values()) {
    parameters += t.info.elementCount;
  }
  post({
    type: "ready",
    info: {
      name:
        input.kind === "file"
          ? input.file.name
          : decodeURIComponent(input.url.split("/").pop() ?? input.url),
      backend: model.backendName,
      backendNote: note,
      architecture: description.file.metadata.getString("general.architecture") ?? "?",
      parameters,
      contextLength,
      loadMs: performance.now() - started,
    },
  });
}

async function generate(message: Extract<ToWorker, { type: "generate" }>): Promise<void> {
  if (generator === undefined || chat === undefined) {
    throw new Error("no model is loaded yet - pick a GGUF file or give its URL first.");
  }
  const controller = new AbortController();
  running = { id: message.id, controller };
  const options = {
    maxTokens: message.maxTokens,
    temperature: message.temperature,
    ...(message.seed === undefined ? {} : { seed: message.seed }),
    signal: controller.signal,
  };
  const started = performance.now();
  let firstTokenMs = -1;
  const generation =
    message.mode === "chat"
      ? chat.prompt(message.prompt, options)
      : generator.generate(message.prompt, options);
  try {
    for await (const text of generation) {
      if (firstTokenMs < 0) {
        firstTokenMs = performance.now() - started;
      }
      post({ type: "token", id: message.id, text });
    }
    const result = await generation.result;
    const t = result.timings;
    post({
      type: "done",
      id: message.id,
      tokens: [...result.tokens],
      stats: {
        promptTokens: t.promptTokens,
        generatedTokens: t.generatedTokens,
        promptMs: t.promptMs,
        generationMs: t.generationMs,
        firstTokenMs: firstTokenMs < 0 ? performance.now() - started : firstTokenMs,
        tokensPerSecond: t.generatedTokensPerSecond,
        finishReason: result.finishReason,
      },
    });
  } finally {
    if (running?.id === message.id) {
      running = undefined;
    }
  }
}

self.onmessage = (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  const job = async () => {
    switch (message.type) {
      case "load":
        return load(message.input, message.backend);
      case "generate":
        return generate(message);
      case "stop":
        if (running?.id === message.id) {
          running.controller.abort();
        }
        return;
      case "reset":
        chat = generator === undefined ? undefined : new ChatSession(generator);
        return;
    }
  };
  job().catch((error: unknown) => {
    post({
      type: "error",
      id: "id" in message ? message.id : undefined,
      message: messageOf(error),
    });
  });
};
