/**
 * The usage log: one JSON object per line per generation request, appended (never rewritten),
 * for billing and audits. A line is written when a request ends, whether it finished, was
 * cancelled, failed or was refused by a rate limit. Write errors (a full disk) are reported
 * once through the server's log and never fail a request.
 */
import * as fs from "node:fs";

export interface UsageRecord {
  /** ISO 8601, when the request ended. */
  readonly time: string;
  readonly tenant: string;
  readonly route: string;
  readonly model: string;
  /** HTTP status, or for streams the outcome (200, 499 client gone, 500). */
  readonly status: number;
  readonly prompt_tokens: number;
  readonly cached_tokens: number;
  readonly completion_tokens: number;
  readonly finish_reason: string | null;
  readonly duration_ms: number;
  /** The rate limit that refused the request, if one did. */
  readonly limit?: string;
}

export class UsageLog {
  readonly path: string;
  readonly #stream: fs.WriteStream;
  #failed = false;

  constructor(path: string, log: (line: string) => void) {
    this.path = path;
    // Opened at once so a path that cannot be written fails the start, not the first request.
    const fd = fs.openSync(path, "a", 0o640);
    this.#stream = fs.createWriteStream(path, { fd, flags: "a" });
    this.#stream.on("error", (error) => {
      if (!this.#failed) {
        this.#failed = true;
        log(`usage log ${path}: ${error.message}; later records are lost`);
      }
    });
  }

  append(record: UsageRecord): void {
    if (!this.#failed) {
      this.#stream.write(`${JSON.stringify(record)}\n`);
    }
  }

  /** Flushes what was written and closes the file. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stream.closed || this.#stream.destroyed) {
        resolve();
        return;
      }
      this.#stream.end(() => resolve());
    });
  }
}
