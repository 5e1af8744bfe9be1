/**
 * Safety limits for parsing untrusted GGUF files. Every count and length in a GGUF header is
 * attacker-controlled; these caps (plus checks against the bytes actually present) make sure
 * no value can drive a huge allocation or a long loop. Each is far above any real model.
 */

/** Tensors per file. The largest released models (1T-parameter MoE) have ~100k tensors. */
export const MAX_TENSOR_COUNT = 1_000_000;

/** Metadata keys per file. Real files have 20-60; tokenizer data lives in arrays, not keys. */
export const MAX_KV_COUNT = 1_000_000;

/** Bytes in one metadata key. The GGUF spec caps keys at 65535 bytes. */
export const MAX_KEY_BYTES = 65_535;

/**
 * Bytes in one string value. The longest real strings are chat templates (tens of KB) and
 * embedded tokenizer.json blobs (~20 MB); llama.cpp allows up to 1 GiB.
 */
export const MAX_STRING_BYTES: number = 256 * 1024 * 1024;

/**
 * Elements in one metadata array. The largest real arrays are BPE merge lists (~300k for
 * LLaMA-3, a few million for 1M-token vocabularies); llama.cpp allows 2^30.
 */
export const MAX_ARRAY_LENGTH: number = 1 << 30;

/**
 * Depth of arrays nested in arrays. The spec allows nesting but llama.cpp rejects it outright
 * and no released model uses it; we accept a little of it for spec compatibility.
 */
export const MAX_ARRAY_NESTING = 4;

/** Dimensions per tensor (GGML_MAX_DIMS). */
export const MAX_TENSOR_DIMS = 4;

/** Bytes in a tensor name: GGML_MAX_NAME is 64 including the terminating NUL. */
export const MAX_TENSOR_NAME_BYTES = 63;

/** Smallest possible encoding of a key/value pair: u64 key length, 1-byte key, u32 type, 1-byte value. */
export const MIN_KV_BYTES: number = 8 + 1 + 4 + 1;

/** Smallest possible tensor info: u64 name length, 1-byte name, u32 n_dims, u32 type, u64 offset. */
export const MIN_TENSOR_INFO_BYTES: number = 8 + 1 + 4 + 4 + 8;

/** GGUF_DEFAULT_ALIGNMENT: used when `general.alignment` is absent. */
export const DEFAULT_ALIGNMENT = 32;
