/**
 * The browser entry (package.json "browser" condition): the portable API, the writer without a
 * file system, and stand-ins for the Node-only functions that throw `GGUF_NODE_ONLY`.
 */
export { openFileSource, readGgufFile, readGgufFileSync } from "./browser/node-only";
export type { ReadGgufFileOptions } from "./node/file";
export type { FileSource } from "./node/file-source";
export * from "./portable";
export { GgufWriter } from "./writer";
