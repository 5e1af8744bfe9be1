/**
 * Three replicas behind HAProxy, one killed and one restarted under load (see replicas.ts):
 *
 *   pnpm replicas model.gguf [--requests 600] [--connections 12] [--streams 6]
 */
import { parseArgs } from "node:util";
import { formatReplicas, haproxyMissing, runReplicas } from "./replicas";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: "string", default: "600" },
    connections: { type: "string", default: "12" },
    streams: { type: "string", default: "6" },
  },
});
const model = positionals[0];
if (model === undefined) {
  console.error(
    "usage: pnpm replicas model.gguf [--requests 600] [--connections 12] [--streams 6]",
  );
  process.exit(2);
}
const missing = haproxyMissing();
if (missing !== undefined) {
  console.error(missing);
  process.exit(2);
}
const report = await runReplicas({
  model,
  requests: Number(values.requests),
  connections: Number(values.connections),
  streams: Number(values.streams),
  log: (line) => console.error(`replicas: ${line}`),
});
console.log(formatReplicas(report));
