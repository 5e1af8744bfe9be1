/** Types of lib.mjs (plain JavaScript so scripts run it without a build). */
export declare const REPO: string;
export declare const CACHE: string;
export declare const SYSROOT: string;
/** The qemu-user binary for AArch64, or undefined. */
export declare function findQemu(): string | undefined;
/** Why AArch64 code cannot run here under emulation, or undefined when it can. */
export declare function emulationProblem(): string | undefined;
/** Why the linux-arm64 addon cannot be cross-compiled here, or undefined when it can. */
export declare function crossCompileProblem(): string | undefined;
/** Unpacks the npm package `spec` (name@version) into `dest`, unless it is there already. */
export declare function fetchPackage(spec: string, dest: string): void;
/** The arm64 node binary (fetched on first use). */
export declare function arm64Node(): string;
/** The command line that runs `args` on arm64 node under qemu with CPU model `cpu`. */
export declare function qemuNodeCommand(
  cpu: string,
  args: readonly string[],
): { command: string; args: string[] };
