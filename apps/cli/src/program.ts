/**
 * The `bitnet` command line: one Commander program whose commands are small modules.
 * `runCli` never throws: errors become one line on stderr and exit code 1.
 */
import { registerBackend } from "@bitnet-ts/engine-core";
import { isBitnetError } from "@bitnet-ts/errors";
import { Command, CommanderError, InvalidArgumentError } from "commander";
// Commands are imported when they run, so `bitnet --help` or `bitnet run` does not load the
// server, converter or llama.cpp bindings (and their memory) that other commands need.
import type { BenchCliOptions } from "./commands/bench";
import { CliInputError } from "./errors";
import {
  addDraftOptions,
  addModelOptions,
  addSamplingOptions,
  byteSize,
  choice,
  integer,
  integerList,
} from "./options";

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

const VERSION = "0.0.0";

// The native CPU kernels are a dependency of the CLI; engine-core loads them on demand.
registerBackend("cpu", () => import("@bitnet-ts/kernels-cpu"));
// WebGPU (Metal, Vulkan, Direct3D 12 through Dawn): `--backend webgpu`, or "auto" on macOS.
registerBackend("webgpu", () => import("@bitnet-ts/kernels-webgpu"));
// CUDA (NVIDIA GPUs): `--backend cuda`, and first in "auto" where a GPU and its driver are found.
registerBackend("cuda", () => import("@bitnet-ts/kernels-cuda"));

export function buildProgram(io: CliIo): Command {
  const program = new Command("bitnet")
    .description("Run BitNet b1.58 ternary language models from Node.js.")
    .version(VERSION, "--version")
    .option("--verbose", "show stack traces on errors")
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError("(run bitnet --help for usage)");

  program
    .command("inspect")
    .description("print the metadata and tensor table of a GGUF file (reads only its header)")
    .argument("<model.gguf>", "GGUF file to inspect")
    .option("--json", "print one JSON object instead of tables")
    .action(async (path: string, options: { json?: boolean }) => {
      io.stdout(
        await (await import("./commands/inspect")).runInspect(path, {
          json: options.json === true,
        }),
      );
    });

  program
    .command("tokenize")
    .description("print the token ids of a text (llama-tokenize style; --json for an array)")
    .requiredOption("-m, --model <model.gguf>", "model whose tokenizer to use")
    .option("-f, --file <file>", "read the text from a UTF-8 file")
    .option("--no-bos", "do not prepend the BOS token")
    .option("--special", "parse special tokens written in the text (e.g. <|eot_id|>)")
    .option(
      "--pre <mode>",
      'pre-tokenizer for files without tokenizer.ggml.pre: "llama3" (default) or "llama.cpp" (bitnet.cpp-compatible)',
    )
    .option("--json", "print only a JSON array of ids")
    .argument("[text]", "text to tokenize")
    .action(
      async (
        text: string | undefined,
        options: {
          model: string;
          file?: string;
          bos: boolean;
          special?: boolean;
          pre?: string;
          json?: boolean;
        },
      ) => {
        io.stdout(await (await import("./commands/tokenize")).runTokenize(text, options));
      },
    );

  program
    .command("detokenize")
    .description("print the text of token ids")
    .requiredOption("-m, --model <model.gguf>", "model whose tokenizer to use")
    .requiredOption("--ids <ids>", "comma-separated token ids, e.g. 128000,9906,1917")
    .option("--special", "render control tokens (BOS, <|eot_id|>, …) as text")
    .action(async (options: { model: string; ids: string; special?: boolean }) => {
      io.stdout(await (await import("./commands/tokenize")).runDetokenize(options));
    });

  program
    .command("info")
    .description("what this machine has: CPU features, cores, memory, CUDA/Metal, backend order")
    .option("--json", "print one JSON object")
    .action(async (options: { json?: boolean }) => {
      io.stdout(await (await import("./commands/info")).runInfo(options));
    });

  const collect = (value: string, previous: string[] = []): string[] => {
    if (value === "") {
      throw new InvalidArgumentError("the text to stop at must not be empty.");
    }
    return [...previous, value];
  };

  addDraftOptions(
    addSamplingOptions(
      addModelOptions(
        program
          .command("run")
          .description("generate text from a prompt, streamed to stdout")
          .option("-p, --prompt <text>", "prompt text")
          .option("-f, --file <file>", "read the prompt from a UTF-8 file (- reads standard input)")
          .option(
            "-n, --n-predict <n>",
            "tokens to generate; -1 = until end of text (default 128)",
            integer("--n-predict", -1),
          )
          .option(
            "-r, --reverse-prompt <text>",
            "stop when this text is generated (repeatable)",
            collect,
          )
          .option("--ignore-eos", "keep generating after end-of-text tokens")
          .option("--special", "parse special tokens written in the prompt")
          .option("--no-display-prompt", "do not echo the prompt")
          .option(
            "--json",
            'print one JSON object: {"prompt_tokens", "tokens", "text", "timings", …}',
          )
          .option(
            "--receipt <out.json>",
            "write a run receipt: model hash, backend, kernels executed, sampling, tokens, timings (check it with verify-receipt)",
          ),
        true,
      ),
    ),
  ).action(async (options) => {
    await (await import("./commands/run")).runRun(options, io);
  });

  addDraftOptions(
    addModelOptions(
      program
        .command("serve")
        .description(
          "OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models, /tokenize, /detokenize, /health, /metrics",
        )
        .option("--host <host>", "address to listen on (default 127.0.0.1: loopback only)")
        .option("--port <port>", "port (default 8080)", integer("--port", 0, 65535))
        .option(
          "--parallel <n>",
          "requests generating at once, batched together (default 4)",
          integer("--parallel", 1, 256),
        )
        .option(
          "--max-queue <n>",
          "requests that may wait for a slot; beyond that 503 + Retry-After (default 64)",
          integer("--max-queue", 0, 100_000),
        )
        .option(
          "--cache-bytes <size>",
          "KV cache kept for prompts that share a prefix (a system prompt, a chat's earlier turns), e.g. 512M; 0 keeps none (default 256M)",
          byteSize("--cache-bytes"),
        )
        .option("--api-key <keys>", "require one of these API keys (comma-separated)")
        .option("--api-key-file <file>", "require one of the API keys in this file (one per line)")
        .option(
          "--tenants <file>",
          "tenants file: hashed API keys with per-key limits (see `bitnet tenants add`); SIGHUP reloads it",
        )
        .option(
          "--usage-log <file>",
          "append one JSON line per generation request (tenant, tokens, status) to this file",
        )
        .option(
          "--timeout <s>",
          "longest generation per request in seconds (default 600)",
          integer("--timeout", 1, 86_400),
        )
        .option("--alias <name>", "model name in /v1/models and responses (default: the file name)")
        .option("--no-webui", "do not serve the chat page at /")
        .option(
          "--grace <s>",
          "on SIGTERM, seconds to let in-flight requests finish (default 10)",
          integer("--grace", 0, 3600),
        ),
      true,
    ),
  ).action(async (options) => {
    await (await import("./commands/serve")).runServe(options, io);
  });

  program
    .command("convert")
    .description(
      "convert a Hugging Face BitNet checkpoint (2B-4T packed or bf16, or 1bitLLM bitnet_b1_58) to GGUF",
    )
    .argument(
      "<hf-folder>",
      "folder with config.json, model.safetensors (or shards) and the tokenizer files",
    )
    .option("-o, --outfile <out.gguf>", "output file (default: <hf-folder>/ggml-model-<type>.gguf)")
    .option(
      "--type <type>",
      "ternary type: i2_s (bitnet.cpp), tq2_0 or tq1_0 (mainline llama.cpp); default i2_s",
    )
    .option("--embed <type>", "token embedding type: f16 (default), f32, q8_0 or q6_k")
    .option(
      "--arch <arch>",
      "bitnet-b1.58 (bitnet.cpp; default for i2_s) or bitnet (mainline llama.cpp; default for tq types)",
      choice("--arch", ["bitnet-b1.58", "bitnet"] as const),
    )
    .action(
      async (
        dir: string,
        options: {
          outfile?: string;
          type?: string;
          embed?: string;
          arch?: "bitnet-b1.58" | "bitnet";
        },
      ) => {
        await (await import("./commands/convert")).runConvert(dir, options, io);
      },
    );

  program
    .command("quantize")
    .description(
      "convert a GGUF between I2_S, TQ2_0 and TQ1_0 (losslessly) and/or between embedding types",
    )
    .argument("<in.gguf>", "input model")
    .argument("<out.gguf>", "output model")
    .argument("[type]", "i2_s, tq2_0 or tq1_0 (omit to change only the embedding)")
    .option("--embed <type>", "token embedding type: f16, f32, q8_0 or q6_k")
    .option("--allow-lossy", "round scales the target type cannot hold exactly instead of refusing")
    .action(
      async (
        input: string,
        output: string,
        type: string | undefined,
        options: { embed?: string; allowLossy?: boolean },
      ) => {
        await (await import("./commands/convert")).runQuantize(input, output, type, options, io);
      },
    );

  const tenants = program
    .command("tenants")
    .description("edit the tenants file of `bitnet serve --tenants` (hashed API keys with limits)");
  tenants
    .command("add")
    .description("add a tenant with a new random API key, printed once (stored as its SHA-256)")
    .argument("<file>", "tenants file (created if missing)")
    .requiredOption(
      "--name <name>",
      "tenant name (letters, digits, _ . -): metrics and usage log label",
    )
    .option("--rpm <n>", "requests per minute", integer("--rpm", 1))
    .option("--tpm <n>", "tokens per minute, prompt and generated", integer("--tpm", 1))
    .option("--streams <n>", "generation requests at once", integer("--streams", 1))
    .action(
      async (
        file: string,
        options: { name: string; rpm?: number; tpm?: number; streams?: number },
      ) => {
        (await import("./commands/tenants")).runTenantsAdd(file, options, io);
      },
    );
  tenants
    .command("remove")
    .description("remove a tenant (its key stops working when the server reloads, on SIGHUP)")
    .argument("<file>", "tenants file")
    .argument("<name>", "tenant name")
    .action(async (file: string, name: string) => {
      (await import("./commands/tenants")).runTenantsRemove(file, name, io);
    });

  program
    .command("verify-receipt")
    .description(
      "check a run receipt: schema, compute path, kernels against the model, token counts, timings; optionally the model file and a replay",
    )
    .argument("<receipt.json>", "receipt written by bitnet run/bench --receipt")
    .option(
      "-m, --model <model.gguf>",
      "check the receipt's sha256, size and tensor types against this file (and replay on it)",
    )
    .option(
      "--replay",
      "re-run the generation with the same model, backend, threads, sampling and seed; require identical token ids",
    )
    .option("--json", "print the gates as JSON")
    .action(async (file: string, options: { model?: string; replay?: boolean; json?: boolean }) => {
      await (await import("./commands/verify-receipt")).runVerifyReceipt(file, options, io);
    });

  addDraftOptions(
    addSamplingOptions(
      addModelOptions(
        program
          .command("chat")
          .description("chat interactively through the model's chat template")
          .option("--system <text>", "system prompt (llama.cpp's -sys works too)")
          .option(
            "-n, --n-predict <n>",
            "most tokens per reply (default 256)",
            integer("--n-predict", -1),
          )
          .option(
            "--context-shift",
            "when the conversation fills the context, drop its oldest turns (the system prompt stays) instead of refusing the message; each shift is reported on stderr",
          ),
        true,
      ),
    ),
  ).action(async (options) => {
    await (await import("./commands/chat")).runChat(options, io);
  });

  addModelOptions(
    program
      .command("perplexity")
      .description(
        "perplexity of a text file (llama-perplexity semantics: the second half of each chunk is scored)",
      )
      .option("-f, --file <file>", "UTF-8 text to score")
      .option("--chunks <n>", "score at most this many chunks", integer("--chunks", 1))
      .option("-b, --batch-size <n>", "tokens per step (default 512)", integer("--batch-size", 1))
      .option("--json", "print one JSON object"),
    false,
  ).action(async (options) => {
    await (await import("./commands/perplexity")).runPerplexity(options, io);
  });

  addModelOptions(
    program
      .command("eval")
      .description(
        "teacher-forced evaluation: logits of every position (raw f32) and greedy next tokens (JSON)",
      )
      .option("--tokens <ids>", "comma-separated token ids")
      .option("--seq", "evaluate one token per step instead of one batch")
      .option("--logits <out.f32>", "write the logits as little-endian f32 [n_tokens, n_vocab]"),
    false,
  ).action(async (options) => {
    await (await import("./commands/eval")).runEval(options, io);
  });

  addModelOptions(
    program
      .command("bench")
      .description(
        "llama-bench for this engine: prompt processing (pp) and generation (tg) tokens/s, optionally next to llama.cpp on the same file, and the memory-bandwidth bound",
      )
      .option(
        "-p, --n-prompt <n>",
        "prompt tokens of the pp tests, comma-separated (default 128; 0 skips)",
        integerList("--n-prompt", 0, 1 << 16),
      )
      .option(
        "-n, --n-gen <n>",
        "generated tokens of the tg tests, comma-separated (default 64; 0 skips)",
        integerList("--n-gen", 0, 1 << 16),
      )
      .option(
        "-d, --n-depth <n>",
        "tokens already in the context when each test starts, comma-separated, as llama-bench's (default 0: an empty cache; e.g. -d 0,4096 measures decode deep in a conversation too)",
        integerList("--n-depth", 0, 1 << 20),
      )
      .option(
        "-r, --repetitions <n>",
        "repetitions per test (default 5)",
        integer("--repetitions", 1, 1000),
      )
      .option(
        "--compare-llama",
        "run the same tests through llama.cpp (node-llama-cpp) in the same run; with --kernel-path, only llama.cpp's CPU variant for the same instruction set (scalar: x64, avx2: haswell, avxvnni: alderlake, avx512vnni: cascadelake, amx: sapphirerapids)",
      )
      .option(
        "--receipt <out.json>",
        "write a bench receipt (model hash, backend, kernels, results)",
      )
      .option(
        "--kernels",
        "with --backend cuda: the kernel table instead (our ternary GEMV against cuBLAS's bf16 GEMV on the 2B-4T shapes; no model needed)",
      )
      .option("--json", "print one JSON object"),
    true,
  ).action(async (options) => {
    const { repetitions, kernels, ...rest } = options as BenchCliOptions & {
      repetitions?: number;
      kernels?: boolean;
    };
    if (kernels === true) {
      await (await import("./commands/bench-kernels")).runKernelBench(
        { backend: rest.backend, json: rest.json === true },
        io,
      );
      return;
    }
    await (await import("./commands/bench")).runBench(
      { ...rest, ...(repetitions === undefined ? {} : { reps: repetitions }) },
      io,
    );
  });

  program
    .command("crossval")
    .description(
      "compare our engine with llama.cpp (node-llama-cpp) on the same GGUF: per-position logits and greedy tokens",
    )
    .option("-m, --model <model.gguf>", "GGUF model llama.cpp can load (TQ1_0 / TQ2_0)")
    .option("-f, --file <prompts.txt>", "prompts, one per line")
    .option(
      "-n, --n-predict <n>",
      "greedy tokens per prompt (default 32)",
      integer("--n-predict", 1, 4096),
    )
    .option(
      "--backend <name>",
      "our backend to compare (default reference; the f64 yardstick always runs)",
      choice("--backend", ["auto", "cpu", "reference", "reference-f64"] as const),
    )
    .option("-t, --threads <n>", "threads", integer("--threads", 1, 1024))
    .option("--json", "print the report as JSON")
    .action(async (options) => {
      await (await import("./commands/crossval")).runCrossval(options, io);
    });

  // A usage error points at the help of the command it happened in.
  for (const command of program.commands) {
    command.showHelpAfterError(`(run bitnet ${command.name()} --help for usage)`);
  }
  return program;
}

/**
 * llama.cpp's multi-letter single-dash flags that name one of our options (Commander only knows
 * one-letter short flags), rewritten to the long form where the command has that option.
 */
const LLAMA_ALIASES: Readonly<Record<string, string>> = {
  "-sys": "--system",
  "-np": "--parallel",
  "-to": "--timeout",
  "-tb": "--threads",
  "-md": "--draft",
};

const NO_LAYER_SPLIT =
  "the whole model runs on one backend, with no layers to offload or split: choose it with --backend (cpu, cuda, webgpu)";
const NO_DOWNLOAD = "bitnet never downloads models: fetch the GGUF yourself and pass it with -m";

/**
 * llama.cpp flags that bitnet does not have, with what to do instead. Without this table
 * Commander would read `-ngl 99` as `-n gl` and `-fa` as `-f a`, and complain about those.
 */
const LLAMA_UNSUPPORTED: Readonly<Record<string, string>> = {
  "-ngl": NO_LAYER_SPLIT,
  "--n-gpu-layers": NO_LAYER_SPLIT,
  "--gpu-layers": NO_LAYER_SPLIT,
  "-ngld": NO_LAYER_SPLIT,
  "--n-gpu-layers-draft": NO_LAYER_SPLIT,
  "-sm": NO_LAYER_SPLIT,
  "--split-mode": NO_LAYER_SPLIT,
  "-ts": NO_LAYER_SPLIT,
  "--tensor-split": NO_LAYER_SPLIT,
  "-mg": NO_LAYER_SPLIT,
  "--main-gpu": NO_LAYER_SPLIT,
  "-dev": NO_LAYER_SPLIT,
  "--device": NO_LAYER_SPLIT,
  "-nkvo": NO_LAYER_SPLIT,
  "--no-kv-offload": NO_LAYER_SPLIT,
  "-fa": "attention is always fused in every backend; drop the flag",
  "--flash-attn": "attention is always fused in every backend; drop the flag",
  "-ctk": "the KV cache is f16 on every backend",
  "--cache-type-k": "the KV cache is f16 on every backend",
  "-ctv": "the KV cache is f16 on every backend",
  "--cache-type-v": "the KV cache is f16 on every backend",
  "-cnv": "for a conversation use `bitnet chat`; `bitnet run` completes one prompt",
  "--conversation": "for a conversation use `bitnet chat`; `bitnet run` completes one prompt",
  "-no-cnv": "`bitnet run` never starts a conversation (that is `bitnet chat`); drop the flag",
  "--no-conversation":
    "`bitnet run` never starts a conversation (that is `bitnet chat`); drop the flag",
  "-cb": "the server always batches continuously; drop the flag",
  "--cont-batching": "the server always batches continuously; drop the flag",
  "-hf": NO_DOWNLOAD,
  "-hfr": NO_DOWNLOAD,
  "--hf-repo": NO_DOWNLOAD,
  "-hff": NO_DOWNLOAD,
  "--hf-file": NO_DOWNLOAD,
  "-mu": NO_DOWNLOAD,
  "--model-url": NO_DOWNLOAD,
  "-mm": "bitnet runs text models only",
  "--mmproj": "bitnet runs text models only",
  "-co": "bitnet prints the generated text plainly",
  "-mli": "`bitnet chat` reads one line per turn",
  "--multiline-input": "`bitnet chat` reads one line per turn",
  "-lv": "use --verbose for stack traces; progress and timings are always on stderr",
  "--verbosity": "use --verbose for stack traces; progress and timings are always on stderr",
};

/** Options whose value is free text, which may itself look like a flag (`-p -fa`). */
const TEXT_VALUED = new Set([
  "-p",
  "--prompt",
  "-r",
  "--reverse-prompt",
  "--system",
  "-sys",
  "--stop",
]);

/**
 * Rewrites llama.cpp's multi-letter aliases to our long options where `command` has them, and
 * refuses llama.cpp flags we do not have with what to use instead (CliInputError), before
 * Commander parses the line.
 */
export function normalizeArgv(argv: readonly string[], command?: Command): string[] {
  const subcommand = argv.find((a) => !a.startsWith("-"));
  const target = command?.commands.find(
    (c) => c.name() === subcommand || c.aliases().includes(subcommand ?? ""),
  );
  // Everything after "--" is an operand.
  const operandsFrom = argv.indexOf("--") < 0 ? argv.length : argv.indexOf("--") + 1;
  const out: string[] = [];
  for (const [i, arg] of argv.entries()) {
    const eq = arg.indexOf("=");
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const previous = argv[i - 1];
    if (i >= operandsFrom || (previous !== undefined && TEXT_VALUED.has(previous))) {
      out.push(arg);
      continue;
    }
    const advice = LLAMA_UNSUPPORTED[flag];
    if (advice !== undefined) {
      throw new CliInputError(`llama.cpp's ${flag} is not a bitnet option - ${advice}.`);
    }
    const long = LLAMA_ALIASES[flag];
    if (long === undefined) {
      out.push(arg);
      continue;
    }
    if (target !== undefined && !target.options.some((o) => o.long === long)) {
      throw new CliInputError(
        `${flag} (${long}) is not an option of \`bitnet ${target.name()}\` - see bitnet ${target.name()} --help.`,
      );
    }
    out.push(long + (eq < 0 ? "" : arg.slice(eq)));
  }
  return out;
}

/** Runs the CLI on `argv` (without the node and script paths) and returns the exit code. */
export async function runCli(rawArgv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  const verbose = rawArgv.includes("--verbose");
  try {
    const argv = normalizeArgv(rawArgv, program);
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (unknown option, missing argument, --help, --version).
      return error.exitCode === 0 ? 0 : 1;
    }
    const message = error instanceof Error ? error.message : String(error);
    const code = isBitnetError(error) ? ` [${error.code}]` : "";
    io.stderr(`bitnet: ${message.split("\n").join(" ")}${code}\n`);
    if (verbose && error instanceof Error && error.stack) {
      io.stderr(`${error.stack}\n`);
    }
    return 1;
  }
}
