/** What the route modules share: the server's state and settings. */
import type { Admission } from "./admission";
import type { Lifecycle } from "./lifecycle";
import type { ServerMetrics } from "./metrics";
import type { UsageLog } from "./usage-log";

export interface ServerContext {
  /** The model's name in /v1/models and responses. */
  readonly alias: string;
  /** When the server started (unix seconds), the model's `created`. */
  readonly created: number;
  /** Longest a request may generate, in ms. */
  readonly timeoutMs: number;
  readonly admission: Admission;
  readonly lifecycle: Lifecycle;
  readonly metrics: ServerMetrics;
  /** Set with `usageLog`. */
  readonly usage: UsageLog | undefined;
  readonly log: (line: string) => void;
}
