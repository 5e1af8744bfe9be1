// The record a failed native build leaves for src/loader.ts (build/native-build-failure.json).
// Shared by build-native.mjs (which writes it) and the loader tests.

/** The line that says what went wrong: the first compiler `error:`, else node-gyp's reason. */
export function firstErrorLine(lines) {
  const patterns = [
    /\berror:/i, // compilers: "file.cc:12:3: error: …", "fatal error: napi.h: No such file…"
    /gyp ERR! stack Error: /, // node-gyp: "not found: make", "Could not find any Python…"
    /gyp ERR! find Python/,
    /\bnot found\b|command not found/i,
    /gyp ERR! (?!build error|stack|System|command|cwd|node -v|node-gyp -v|not ok)/,
  ];
  for (const pattern of patterns) {
    const line = lines.find((l) => pattern.test(l));
    if (line !== undefined) {
      return line.trim();
    }
  }
  return lines.at(-1)?.trim() ?? "";
}

/** The failure record: when, during what, the command, its exit code, the error and the last 30 lines. */
export function failureRecord({ during, command, exitCode, output, at = new Date() }) {
  const lines = output.split(/\r?\n/).filter((l) => l.trim() !== "");
  return {
    at: at.toISOString(),
    during,
    command,
    exitCode,
    error: firstErrorLine(lines) || `exit code ${exitCode}`,
    log: lines.slice(-30).join("\n"),
  };
}
