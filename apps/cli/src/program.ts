/**
 * The `bitnet` command line: one Commander program whose commands are small modules.
 * `runCli` never throws: errors become one line on stderr and exit code 1.
 */
import { isBitnetError } from "@bitnet-ts/errors";
import { Command, CommanderError } from "commander";
import { runInspect } from "./commands/inspect";

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
