export interface NativeBuildFailureRecord {
  /** ISO time of the failed build. */
  at: string;
  /** "install" (the package's install hook) or "build" (build / build:native). */
  during: "install" | "build";
  command: string;
  exitCode: number;
  /** The first compiler `error:` line (else node-gyp's reason). */
  error: string;
  /** The last 30 non-empty lines of output. */
  log: string;
}
export function firstErrorLine(lines: readonly string[]): string;
export function failureRecord(options: {
  during: "install" | "build";
  command: string;
  exitCode: number;
  output: string;
  at?: Date;
}): NativeBuildFailureRecord;
