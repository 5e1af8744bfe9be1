/**
 * The chat page. Two modes, one UI:
 * - local: the engine runs in a Web Worker on this machine (WebGPU, or the reference backend);
 *   the person picks a GGUF file or gives a URL (`?model=URL` loads one at once).
 * - server: the page was served by `bitnet serve`; it talks to that server's OpenAI-compatible
 *   API (/v1/chat/completions, /v1/completions) with streaming, sending the API key if one is set.
 */
import type { BackendChoice, FromWorker, GenerationStats, ModelInput, ToWorker } from "./protocol";

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

const ui = {
  modelName: $<HTMLSpanElement>("model-name"),
  backend: $<HTMLSpanElement>("backend"),
  speed: $<HTMLSpanElement>("speed"),
  modelPanel: $<HTMLElement>("model-panel"),
  serverPanel: $<HTMLElement>("server-panel"),
  file: $<HTMLInputElement>("model-file"),
  urlForm: $<HTMLFormElement>("url-form"),
  url: $<HTMLInputElement>("model-url"),
  loadDefault: $<HTMLButtonElement>("load-default"),
  backendChoice: $<HTMLSelectElement>("backend-choice"),
  progress: $<HTMLProgressElement>("progress"),
  status: $<HTMLParagraphElement>("status"),
  apiKey: $<HTMLInputElement>("api-key"),
  note: $<HTMLParagraphElement>("note"),
  error: $<HTMLParagraphElement>("error"),
  messages: $<HTMLElement>("messages"),
  form: $<HTMLFormElement>("prompt-form"),
  prompt: $<HTMLTextAreaElement>("prompt"),
  mode: $<HTMLSelectElement>("mode"),
  maxTokens: $<HTMLInputElement>("max-tokens"),
  temperature: $<HTMLInputElement>("temperature"),
  newChat: $<HTMLButtonElement>("new-chat"),
  stop: $<HTMLButtonElement>("stop"),
  send: $<HTMLButtonElement>("send"),
};

/** The page's state, also on `document.body.dataset` so that tests and people can see it. */
function setState(state: "idle" | "loading" | "ready" | "generating" | "error"): void {
  document.body.dataset["state"] = state;
  const busy = state === "loading" || state === "generating";
  ui.send.disabled = state !== "ready";
  ui.stop.disabled = state !== "generating";
  for (const el of [ui.file, ui.url, ui.loadDefault, ui.backendChoice]) {
    el.disabled = busy;
  }
}

function showError(message: string | undefined): void {
  ui.error.hidden = message === undefined;
  ui.error.textContent = message ?? "";
}

function showNote(message: string | undefined): void {
  ui.note.hidden = message === undefined;
  ui.note.textContent = message ?? "";
}

function addMessage(role: "user" | "assistant", text: string): HTMLDivElement {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(body);
  ui.messages.append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function showStats(div: HTMLDivElement, stats: GenerationStats): void {
  const line = document.createElement("span");
  line.className = "stats";
  line.textContent = `${stats.generatedTokens} tokens, ${stats.tokensPerSecond.toFixed(1)} t/s, first token after ${Math.round(stats.firstTokenMs)} ms (${stats.finishReason})`;
  div.append(line);
  ui.speed.textContent = `${stats.tokensPerSecond.toFixed(1)} t/s`;
  div.dataset["firstTokenMs"] = String(stats.firstTokenMs);
  div.dataset["tokensPerSecond"] = String(stats.tokensPerSecond);
}

interface Engine {
  generate(
    mode: "chat" | "complete",
    prompt: string,
    onText: (text: string) => void,
  ): Promise<{ stats: GenerationStats; tokens: readonly number[] | undefined }>;
  stop(): void;
  reset(): void;
}

function settings(): { maxTokens: number; temperature: number } {
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  const temperature = Number.parseFloat(ui.temperature.value);
  return {
    maxTokens: Number.isFinite(maxTokens) && maxTokens > 0 ? maxTokens : 128,
    temperature: Number.isFinite(temperature) && temperature >= 0 ? temperature : 0.8,
  };
}

// ------------------------------------------------------------------ local mode (Web Worker)

function localEngine(): Engine & { load(input: ModelInput, backend: BackendChoice): void } {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  let nextId = 1;
  let pending:
    | {
        id: number;
        onText: (text: string) => void;
        resolve: (r: { stats: GenerationStats; tokens: readonly number[] }) => void;
        reject: (e: Error) => void;
      }
    | undefined;
  const send = (message: ToWorker) => worker.postMessage(message);
  worker.onerror = (event) => {
    setState("error");
    showError(`The engine stopped: ${event.message || "an error in the worker"}. Reload the page.`);
  };
  worker.onmessage = (event: MessageEvent<FromWorker>) => {
    const m = event.data;
    switch (m.type) {
      case "progress":
        ui.progress.hidden = false;
        ui.progress.max = Math.max(1, m.total);
        ui.progress.value = m.done;
        ui.status.textContent = `loading: ${m.phase} ${m.done}/${m.total}`;
        break;
      case "ready":
        ui.progress.hidden = true;
        ui.modelName.textContent = m.info.name;
        ui.backend.textContent = m.info.backend;
        document.body.dataset["backend"] = m.info.backend;
        ui.status.textContent = `loaded ${m.info.architecture}, ${(m.info.parameters / 1e6).toFixed(1)} M parameters, in ${Math.round(m.info.loadMs)} ms; context ${m.info.contextLength}`;
        document.body.dataset["loadMs"] = String(m.info.loadMs);
        showNote(m.info.backendNote);
        setState("ready");
        break;
      case "token":
        if (pending?.id === m.id) {
          pending.onText(m.text);
        }
        break;
      case "done":
        if (pending?.id === m.id) {
          pending.resolve({ stats: m.stats, tokens: m.tokens });
          pending = undefined;
        }
        break;
      case "error":
        if (m.id !== undefined && pending?.id === m.id) {
          pending.reject(new Error(m.message));
          pending = undefined;
        } else {
          ui.progress.hidden = true;
          setState("error");
          showError(`Could not load the model: ${m.message}`);
        }
        break;
    }
  };
  return {
    load(input, backend) {
      showError(undefined);
      showNote(undefined);
      setState("loading");
      ui.status.textContent = "loading…";
      send({ type: "load", input, backend });
    },
    generate(mode, prompt, onText) {
      const id = nextId++;
      const { maxTokens, temperature } = settings();
      return new Promise((resolve, reject) => {
        pending = { id, onText, resolve, reject };
        send({ type: "generate", id, mode, prompt, maxTokens, temperature, seed: undefined });
      });
    },
    stop() {
      if (pending !== undefined) {
        send({ type: "stop", id: pending.id });
      }
    },
    reset() {
      send({ type: "reset" });
    },
  };
}

// ------------------------------------------------------------------ server mode (bitnet serve)

function authHeaders(): Record<string, string> {
  const key = ui.apiKey.value.trim();
  return key === "" ? {} : { authorization: `Bearer ${key}` };
}

async function apiError(response: Response): Promise<string> {
  try {
    const body = (await response.json()) as { error?: { message?: string } };
    return body.error?.message ?? `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function serverEngine(): Engine & { connect(): Promise<void> } {
  let controller: AbortController | undefined;
  const conversation: { role: string; content: string }[] = [];
  return {
    async connect() {
      showError(undefined);
      const response = await fetch("v1/models", { headers: authHeaders() });
      if (response.status === 401) {
        setState("idle");
        showError("This server needs an API key: enter it above.");
        return;
      }
      if (!response.ok) {
        throw new Error(await apiError(response));
      }
      const models = (await response.json()) as {
        data: { id: string; meta?: { backend?: string } }[];
      };
      const model = models.data[0];
      ui.modelName.textContent = model?.id ?? "?";
      ui.backend.textContent = `${model?.meta?.backend ?? "?"} (server)`;
      document.body.dataset["backend"] = model?.meta?.backend ?? "";
      ui.status.textContent = "connected";
      setState("ready");
    },
    async generate(mode, prompt, onText) {
      controller = new AbortController();
      const { maxTokens, temperature } = settings();
      if (mode === "chat") {
        conversation.push({ role: "user", content: prompt });
      }
      const started = performance.now();
      const response = await fetch(mode === "chat" ? "v1/chat/completions" : "v1/completions", {
        method: "POST",
        headers: { "content-type": "application/json", ...authHeaders() },
        body: JSON.stringify({
          ...(mode === "chat" ? { messages: conversation } : { prompt }),
          max_tokens: maxTokens,
          temperature,
          stream: true,
        }),
        signal: controller.signal,
      });
      if (!response.ok || response.body === null) {
        if (mode === "chat") {
          conversation.pop();
        }
        throw new Error(await apiError(response));
      }
      let text = "";
      let pieces = 0;
      let firstTokenMs = -1;
      let finishReason = "stop";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            break;
          }
          buffer += value;
          const events = buffer.split("\n\n");
          buffer = events.pop() ?? "";
          for (const event of events) {
            const data = event
              .split("\n")
              .filter((l) => l.startsWith("data:"))
              .map((l) => l.slice(5).trim())
              .join("");
            if (data === "" || data === "[DONE]") {
              continue;
            }
            const chunk = JSON.parse(data) as {
              choices?: {
                delta?: { content?: string };
                text?: string;
                finish_reason?: string | null;
              }[];
              error?: { message?: string };
            };
            if (chunk.error !== undefined) {
              throw new Error(chunk.error.message ?? "the server reported an error");
            }
            const choice = chunk.choices?.[0];
            const piece = choice?.delta?.content ?? choice?.text ?? "";
            if (piece !== "") {
              if (firstTokenMs < 0) {
                firstTokenMs = performance.now() - started;
              }
              pieces++;
              text += piece;
              onText(piece);
            }
            finishReason = choice?.finish_reason ?? finishReason;
          }
        }
      } catch (error) {
        if ((error as Error).name !== "AbortError") {
          throw error;
        }
        finishReason = "abort";
      }
      if (mode === "chat") {
        conversation.push({ role: "assistant", content: text });
      }
      const generationMs = performance.now() - started - Math.max(0, firstTokenMs);
      return {
        tokens: undefined,
        stats: {
          promptTokens: 0,
          generatedTokens: pieces,
          promptMs: Math.max(0, firstTokenMs),
          generationMs,
          firstTokenMs: Math.max(0, firstTokenMs),
          // Streamed pieces are tokens (the server sends one per token).
          tokensPerSecond: pieces > 1 ? ((pieces - 1) * 1000) / generationMs : 0,
          finishReason,
        },
      };
    },
    stop() {
      controller?.abort();
    },
    reset() {
      conversation.length = 0;
    },
  };
}

// ------------------------------------------------------------------ wiring

async function isServedByBitnet(): Promise<boolean> {
  const forced = new URLSearchParams(location.search).get("mode");
  if (forced === "local" || forced === "server") {
    return forced === "server";
  }
  try {
    const response = await fetch("v1/models", { headers: authHeaders() });
    return response.status === 401 || (response.headers.get("content-type") ?? "").includes("json");
  } catch {
    return false;
  }
}

async function start(): Promise<void> {
  setState("idle");
  const server = await isServedByBitnet();
  document.body.dataset["mode"] = server ? "server" : "local";
  let engine: Engine;
  if (server) {
    ui.modelPanel.hidden = true;
    ui.serverPanel.hidden = false;
    const remote = serverEngine();
    engine = remote;
    ui.apiKey.addEventListener("change", () => {
      remote.connect().catch((e: Error) => showError(e.message));
    });
    await remote.connect().catch((e: Error) => {
      setState("error");
      showError(`Could not reach the server: ${e.message}`);
    });
  } else {
    const local = localEngine();
    engine = local;
    const backend = () => ui.backendChoice.value as BackendChoice;
    const params = new URLSearchParams(location.search);
    const forcedBackend = params.get("backend");
    if (forcedBackend === "webgpu" || forcedBackend === "reference" || forcedBackend === "auto") {
      ui.backendChoice.value = forcedBackend;
    }
    ui.file.addEventListener("change", () => {
      const file = ui.file.files?.[0];
      if (file !== undefined) {
        local.load({ kind: "file", file }, backend());
      }
    });
    ui.urlForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const url = ui.url.value.trim();
      if (url !== "") {
        local.load({ kind: "url", url: new URL(url, location.href).href }, backend());
      }
    });
    ui.loadDefault.addEventListener("click", () => {
      local.load(
        { kind: "url", url: new URL("models/default.gguf", location.href).href },
        backend(),
      );
    });
    const model = params.get("model");
    if (model !== null) {
      ui.url.value = model;
      local.load({ kind: "url", url: new URL(model, location.href).href }, backend());
    }
  }

  ui.newChat.addEventListener("click", () => {
    engine.reset();
    ui.messages.replaceChildren();
  });
  ui.stop.addEventListener("click", () => engine.stop());
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !ui.send.disabled) {
      event.preventDefault();
      ui.form.requestSubmit();
    }
  });
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = ui.prompt.value;
    if (prompt.trim() === "" || ui.send.disabled) {
      return;
    }
    const mode = ui.mode.value === "complete" ? "complete" : "chat";
    ui.prompt.value = "";
    showError(undefined);
    addMessage("user", prompt);
    const reply = addMessage("assistant", "");
    const text = reply.querySelector<HTMLSpanElement>(".text")!;
    reply.dataset["state"] = "generating";
    setState("generating");
    engine
      .generate(mode, prompt, (piece) => {
        text.textContent += piece;
      })
      .then(({ stats, tokens }) => {
        showStats(reply, stats);
        if (tokens !== undefined) {
          reply.dataset["tokens"] = tokens.join(",");
        }
        reply.dataset["state"] = "done";
        setState("ready");
      })
      .catch((error: Error) => {
        reply.dataset["state"] = "error";
        showError(`Generation failed: ${error.message}`);
        setState("ready");
      });
  });
}

start().catch((error: Error) => {
  setState("error");
  showError(error.message);
});
