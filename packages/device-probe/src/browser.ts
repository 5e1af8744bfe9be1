/**
 * The browser entry (package.json "browser" condition): the same API, probing what a page can
 * see (navigator.hardwareConcurrency, navigator.deviceMemory) instead of the OS.
 */
export { probeCpu, probeCuda, probeDevice, probeMemory, probeMetal } from "./browser/probe";
export * from "./portable";
