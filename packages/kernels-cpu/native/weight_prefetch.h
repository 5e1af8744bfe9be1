// ---------------------------------------------------------------------------------------------
// Software prefetch for the kernels that pass over weights with several tokens at a time.
// Included inside namespace bitnet { namespace { … } } of the x86 kernel files.
//
// A step of 4-16 tokens reads each row tile of weights from memory once, and the multi-token
// passes read it in an order the hardware prefetcher follows poorly (a chunk of every row, then
// the next chunk; or one row at a time at a fraction of the decode loop's speed). Without help
// they ran from memory at 50-75% of their rate from cache on an Intel Xeon (bench/gemm.sh with
// 400000 rows against 6912: avx2 I2_S four tokens 51 against 96 GMAC/s on one core, eight 98
// against 131). While a row's bytes are used, the same bytes kPrefetchRowsAhead rows further are
// asked for: 8 rows measured best (4: 119, 8: 130, 16: 129 GMAC/s for the avx2 eight-token
// pass). Rows past a tile are the next tile's; past the matrix the requests are harmless.
// ---------------------------------------------------------------------------------------------
#pragma once

constexpr int64_t kPrefetchRowsAhead = 8;

// A one-token loop's request for the line at p: PREFETCHNTA where decode_prefetch().non_temporal
// says so (kernels.h), else with Hint. Loops read `nta` once; GCC unswitches them on it.
template <int Hint>
inline void prefetch_decode_line(const void* p, bool nta) {
  if (nta) {
    _mm_prefetch((const char*)p, _MM_HINT_NTA);
  } else {
    _mm_prefetch((const char*)p, (enum _mm_hint)Hint);
  }
}

// Every line of [p, p + bytes) into L1: one request per 64 bytes from p, and one for the last
// byte (the last line when p is not 64-byte aligned; otherwise a repeated request). Fixed
// offsets unroll for a constant size; walking the exact lines instead (a loop whose length
// depends on the address) ran the avx512vnni eight-token TQ2_0 pass at 122 instead of 134
// GMAC/s from memory.
inline void prefetch_bytes(const void* p, int64_t bytes) {
  const char* c = (const char*)p;
  for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
  _mm_prefetch(c + bytes - 1, _MM_HINT_T0);
}
