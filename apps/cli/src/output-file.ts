/**
 * Files the CLI writes (receipts, logits, tenant files, converted models): checked before the
 * work that produces them, so a typo in a folder name does not cost a whole run, written through
 * a temporary file renamed into place, and failures reported in words with the flag that named
 * the file.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { CliInputError } from "./errors";

/** What a failed file operation means, in a few words. */
export function describeFsError(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  switch (e?.code) {
    case "ENOENT":
      return "its folder does not exist";
    case "ENOTDIR":
      return "a part of the path is not a folder";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "it is a folder; name a file";
    case "ENOSPC":
      return "no space left on the device";
    case "EROFS":
      return "the file system is read-only";
    case "EDQUOT":
      return "the disk quota is exceeded";
    default:
      return (e?.message ?? String(error)).split("\n")[0]!;
  }
}

/** Throws CliInputError unless `file` can be created or replaced (its folder exists and is writable). */
export function checkOutputPath(file: string, flag: string): void {
  const fail = (why: string): never => {
    throw new CliInputError(`could not write ${flag} ${file} - ${why}.`);
  };
  const resolved = path.resolve(file);
  try {
    if (fs.statSync(resolved).isDirectory()) {
      fail("it is a folder; name a file");
    }
  } catch (error) {
    if (error instanceof CliInputError) {
      throw error;
    }
    // Not there yet: its folder decides.
  }
  const dir = path.dirname(resolved);
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dir);
  } catch (error) {
    fail(
      (error as NodeJS.ErrnoException).code === "ENOENT"
        ? `the folder ${dir} does not exist`
        : `the folder ${dir} cannot be used (${describeFsError(error)})`,
    );
  }
  if (!stat?.isDirectory()) {
    fail(`${dir} is not a folder`);
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    fail(`the folder ${dir} is not writable`);
  }
}

/**
 * Writes `data` to `file` through a temporary file in the same folder renamed into place, so a
 * reader never sees half a file and a failure leaves the old one (if any) untouched.
 */
export function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  flag: string,
  mode?: number,
): void {
  const resolved = path.resolve(file);
  const tmp = path.join(path.dirname(resolved), `.${path.basename(resolved)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, data, mode === undefined ? {} : { mode });
    fs.renameSync(tmp, resolved);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    throw new CliInputError(`could not write ${flag} ${file} - ${describeFsError(error)}.`);
  }
}
