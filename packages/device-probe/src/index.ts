/**
 * What the machine has, for choosing backends, receipts and `bitnet info`. Never throws: what
 * cannot be read is reported as unknown or unavailable with a reason.
 */
export { probeCpu } from "./node/cpu";
export { probeCuda, probeMetal } from "./node/gpu";
export { probeDevice, probeMemory } from "./node/probe";
export * from "./portable";
