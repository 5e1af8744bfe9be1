// Entry of the self-contained converter bundle that travels to the GPU machine (no node_modules
// there): node convert.mjs <checkpoint> <out.gguf> <i2_s|tq2_0>.
import { convertCheckpoint } from "@bitnet-ts/convert";

const [dir, out, type] = process.argv.slice(2);
const summary = await convertCheckpoint(dir, out, { type: type.toUpperCase() });
console.log(`converted ${dir} → ${out} (${summary.arch}, ${summary.layout})`);
