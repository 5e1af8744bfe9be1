/**
 * The `bitnet` command line: one Commander program whose commands are small modules.
 * `runCli` never throws: errors become one line on stderr and exit code 1.
 */
import { isBitnetError } from "@bitnet-ts/errors";
import { Command, CommanderError } from "commander";
import { runInspect } from "./commands/inspect";
import { runDetokenize, runTokenize } from "./commands/tokenize";

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

const VERSION = "0.0.0";

function buildProgram(io: CliIo): Command {
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
      io.stdout(await runInspect(path, { json: options.json === true }));
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
        io.stdout(await runTokenize(text, options));
      },
    );

  program
    .command("detokenize")
    .description("print the text of token ids")
    .requiredOption("-m, --model <model.gguf>", "model whose tokenizer to use")
    .requiredOption("--ids <ids>", "comma-separated token ids, e.g. 128000,9906,1917")
    .option("--special", "render control tokens (BOS, <|eot_id|>, …) as text")
    .action(async (options: { model: string; ids: string; special?: boolean }) => {
      io.stdout(await runDetokenize(options));
    });

  return program;
}

/** Runs the CLI on `argv` (without the node and script paths) and returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  const verbose = argv.includes("--verbose");
  try {
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
