/** The Node entry: the portable API plus reading and writing files by path. */

export { type ReadGgufFileOptions, readGgufFile, readGgufFileSync } from "./node/file";
export { type FileSource, openFileSource } from "./node/file-source";
export { GgufWriter } from "./node/writer";
export * from "./portable";
