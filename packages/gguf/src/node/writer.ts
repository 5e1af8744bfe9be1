/** Node only: the writer with `writeFile` (the browser build's `writeFile` throws). */
import * as fs from "node:fs";
import * as path from "node:path";
import { GgufWriter as PortableGgufWriter, type WriteProgress } from "../writer";

/**
 * {@link PortableGgufWriter} with `writeFile`: builds a GGUF v3 file and streams it to disk.
 *
 * @example
 * const writer = new GgufWriter();
 * writer.set("general.architecture", gguf.string("bitnet-b1.58"));
 * writer.addTensor("output_norm.weight", "F32", [2560], new Uint8Array(2560 * 4));
 * await writer.writeFile("model.gguf");
 */
export class GgufWriter extends PortableGgufWriter {
  /**
   * Streams the file to `filePath`. It is written to a temporary file next to the target and
   * renamed into place at the end, so a failure never leaves a partial file behind.
   */
  override async writeFile(
    filePath: string,
    options: { onProgress?: WriteProgress } = {},
  ): Promise<void> {
    const dir = path.dirname(path.resolve(filePath));
    const temp = path.join(dir, `.${path.basename(filePath)}.${process.pid}.${Date.now()}.tmp`);
    const handle = await fs.promises.open(temp, "w");
    const buffered = new BufferedFile(handle);
    try {
      await this.writeTo((chunk) => buffered.write(chunk), options);
      await buffered.flush();
      await handle.close();
      await fs.promises.rename(temp, filePath);
    } catch (error) {
      await handle.close().catch(() => {});
      await fs.promises.rm(temp, { force: true });
      throw error;
    }
  }
}

/**
 * Coalesces writes into 8 MiB writes at 8 MiB-aligned offsets (all but the last). Besides fewer
 * syscalls, this lets filesystems with large folios (ext4, xfs on Linux ≥ 6.16) cache the new
 * file in 2 MiB folios, which a model loader can then map with 2 MiB page-table entries.
 */
class BufferedFile {
  readonly #buffer = new Uint8Array(8 << 20);
  #used = 0;

  constructor(readonly handle: fs.promises.FileHandle) {}

  async write(chunk: Uint8Array): Promise<void> {
    let done = 0;
    while (done < chunk.length) {
      const n = Math.min(chunk.length - done, this.#buffer.length - this.#used);
      this.#buffer.set(chunk.subarray(done, done + n), this.#used);
      this.#used += n;
      done += n;
      if (this.#used === this.#buffer.length) {
        await this.flush();
      }
    }
  }

  async flush(): Promise<void> {
    if (this.#used > 0) {
      await writeAll(this.handle, this.#buffer.subarray(0, this.#used));
      this.#used = 0;
    }
  }
}

async function writeAll(handle: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}
