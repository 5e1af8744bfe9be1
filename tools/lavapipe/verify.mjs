// Asks Dawn (the `webgpu` package the WebGPU backend depends on) for an adapter and prints its
// description. Run by setup.sh with VK_DRIVER_FILES and LD_LIBRARY_PATH set.
// Exit 0: an adapter; 1: none; 2: the webgpu package is not installed (nothing checked).
import { createRequire } from "node:module";
import * as path from "node:path";
import { pathToFileURL } from "node:url";

const repo = process.argv[2] ?? path.resolve(import.meta.dirname ?? ".", "../..");
let entry;
try {
  entry = createRequire(path.join(repo, "packages/kernels-webgpu/package.json")).resolve("webgpu");
} catch {
  process.exit(2);
}
const { create, globals } = await import(pathToFileURL(entry).href);
Object.assign(globalThis, globals);
const adapter = await create([]).requestAdapter();
if (adapter === null) {
  console.error("lavapipe: Dawn found no Vulkan adapter");
  process.exit(1);
}
const { vendor, device, description } = adapter.info;
console.log(`lavapipe: WebGPU adapter: ${description || device || vendor}`);
process.exit(0);
