import { createHash } from "node:crypto";
import * as fs from "node:fs";

/** SHA-256 of a file, streamed (a 1.2 GB model hashes in a few seconds without loading it). */
export async function sha256File(
  path: string,
  onProgress?: (done: number, total: number) => void,
): Promise<string> {
  const total = fs.statSync(path).size;
  const hash = createHash("sha256");
  let done = 0;
  for await (const chunk of fs.createReadStream(path, { highWaterMark: 1 << 22 })) {
    hash.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    onProgress?.(done, total);
  }
  return hash.digest("hex");
}
