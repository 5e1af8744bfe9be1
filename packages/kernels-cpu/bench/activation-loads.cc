// What one-token I2_S loops lose to their activation loads. The AVX-512 decode loop reads 64
// bytes of codes and four 64-byte activation vectors (from L1) per 256 columns; with two threads
// streaming a 600 MiB matrix of 2560-column rows, this compares:
//   kernel     the path's own i2s_gemm, one token
//   loads      the same loop written out: codes and activations loaded every block
//   registers  the same codes, the activations held in four registers (wrong sums, same bytes
//              from memory): how fast the loop would stream if no activation load competed
//              with the code loads
//   rows2      two rows per pass sharing each activation load (two interleaved streams)
//   probe      the bandwidth probe's plain loads over the same bytes
// Layouts take turns repetition by repetition; each prints its median and range. Needs AVX-512
// VNNI. On a Zen 5 in a fast minute: loads 46-47 GB/s, registers 65-68, kernel 63-71, probe 63-69,
// rows2 37-38. Without software prefetch the activation loads cost ~30%; the kernel's prefetch
// 6 KiB ahead wins all of it back, and two interleaved streams lose far more than they save.
//   bash packages/kernels-cpu/bench/build-run.sh activation-loads [reps=7]
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>
#include "../native/kernels.h"
#include "../native/platform.h"
using namespace bitnet;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni")
// acc += a · b (u8 × s8 by fours) in place, as the kernels write it.
static inline __m512i dp(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// Rows of `cols` columns over [w, w + n): two 256-column blocks per pass into eight accumulators,
// fields masked in place, as kernels_avx512.cc's decode loop.
template <bool Registers>
static void rows1(const uint8_t* w, int64_t n, const int8_t* q, int64_t cols, int32_t* out) {
  const int64_t row_bytes = cols / 4;
  const __m512i m0 = _mm512_set1_epi8((char)0xC0), m1 = _mm512_set1_epi8(0x30), m2 = _mm512_set1_epi8(0x0C),
                m3 = _mm512_set1_epi8(3);
  const __m512i r0 = _mm512_loadu_si512(q), r1 = _mm512_loadu_si512(q + 64), r2 = _mm512_loadu_si512(q + 128),
                r3 = _mm512_loadu_si512(q + 192);
  for (int64_t r = 0; r < n / row_bytes; r++) {
    const uint8_t* row = w + r * row_bytes;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
    for (int64_t c = 0; c + 512 <= cols; c += 512) {
      const __m512i pa = _mm512_loadu_si512(row + c / 4), pb = _mm512_loadu_si512(row + c / 4 + 64);
      const int8_t* qc = q + c;
      const auto act = [&](int k, __m512i reg) { return Registers ? reg : _mm512_loadu_si512(qc + 64 * k); };
      a0 = dp(a0, _mm512_and_si512(pa, m0), act(0, r0));
      a1 = dp(a1, _mm512_and_si512(pa, m1), act(1, r1));
      a2 = dp(a2, _mm512_and_si512(pa, m2), act(2, r2));
      a3 = dp(a3, _mm512_and_si512(pa, m3), act(3, r3));
      e0 = dp(e0, _mm512_and_si512(pb, m0), act(4, r0));
      e1 = dp(e1, _mm512_and_si512(pb, m1), act(5, r1));
      e2 = dp(e2, _mm512_and_si512(pb, m2), act(6, r2));
      e3 = dp(e3, _mm512_and_si512(pb, m3), act(7, r3));
    }
    const __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, e0), _mm512_add_epi32(a1, e1)),
                                       _mm512_add_epi32(_mm512_add_epi32(a2, e2), _mm512_add_epi32(a3, e3)));
    out[r] = _mm512_reduce_add_epi32(s);
  }
}

// Two adjacent rows per pass, each activation vector loaded once for both.
static void rows2(const uint8_t* w, int64_t n, const int8_t* q, int64_t cols, int32_t* out) {
  const int64_t row_bytes = cols / 4;
  const __m512i m0 = _mm512_set1_epi8((char)0xC0), m1 = _mm512_set1_epi8(0x30), m2 = _mm512_set1_epi8(0x0C),
                m3 = _mm512_set1_epi8(3);
  for (int64_t r = 0; r + 2 <= n / row_bytes; r += 2) {
    const uint8_t* ra = w + r * row_bytes;
    const uint8_t* rb = ra + row_bytes;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
    for (int64_t c = 0; c + 256 <= cols; c += 256) {
      const __m512i pa = _mm512_loadu_si512(ra + c / 4), pb = _mm512_loadu_si512(rb + c / 4);
      const __m512i x0 = _mm512_loadu_si512(q + c), x1 = _mm512_loadu_si512(q + c + 64),
                    x2 = _mm512_loadu_si512(q + c + 128), x3 = _mm512_loadu_si512(q + c + 192);
      a0 = dp(a0, _mm512_and_si512(pa, m0), x0);
      a1 = dp(a1, _mm512_and_si512(pa, m1), x1);
      a2 = dp(a2, _mm512_and_si512(pa, m2), x2);
      a3 = dp(a3, _mm512_and_si512(pa, m3), x3);
      e0 = dp(e0, _mm512_and_si512(pb, m0), x0);
      e1 = dp(e1, _mm512_and_si512(pb, m1), x1);
      e2 = dp(e2, _mm512_and_si512(pb, m2), x2);
      e3 = dp(e3, _mm512_and_si512(pb, m3), x3);
    }
    out[r] = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
    out[r + 1] = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(e0, e1), _mm512_add_epi32(e2, e3)));
  }
}
#pragma GCC pop_options

int main(int argc, char** argv) {
  const Kernels* k = select_kernels("avx512vnni");
  if (k == nullptr) {
    printf("skipped: this CPU has no AVX-512 VNNI\n");
    return 0;
  }
  const int reps = argc > 1 ? atoi(argv[1]) : 7;
  const int64_t cols = 2560, row_bytes = cols / 4;
  const size_t huge = (size_t)2 << 20, bytes = (size_t)600 << 20;
  const int64_t rows = (int64_t)(bytes / row_bytes);
  auto* w = (uint8_t*)aligned_alloc(huge, bytes);
  advise_huge_pages(w, bytes);
  uint32_t x = 1;
  for (size_t i = 0; i < bytes; i++) {
    x = x * 1664525u + 1013904223u;
    w[i] = (uint8_t)(x >> 24) & 0xAA;  // codes 0 and 2 only: valid I2_S
  }
  AlignedVector<int8_t> q((size_t)cols);
  for (int64_t i = 0; i < cols; i++) q[(size_t)i] = (int8_t)(i * 7 % 255 - 127);
  std::vector<float> out((size_t)rows);
  std::vector<int32_t> sums((size_t)rows);
  const float scale = 1.0f;
  const int32_t sum = 0;
  using Part = std::function<void(int64_t r0, int64_t r1)>;  // rows [r0, r1)
  const std::vector<std::pair<const char*, Part>> layouts = {
      {"kernel", [&](int64_t r0, int64_t r1) { k->i2s_gemm(w, cols, r0, r1, q.data(), &scale, &sum, 1.0f, 1, out.data(), rows); }},
      {"loads", [&](int64_t r0, int64_t r1) { rows1<false>(w + r0 * row_bytes, (r1 - r0) * row_bytes, q.data(), cols, sums.data() + r0); }},
      {"registers", [&](int64_t r0, int64_t r1) { rows1<true>(w + r0 * row_bytes, (r1 - r0) * row_bytes, q.data(), cols, sums.data() + r0); }},
      {"rows2", [&](int64_t r0, int64_t r1) { rows2(w + r0 * row_bytes, (r1 - r0) * row_bytes, q.data(), cols, sums.data() + r0); }},
      {"probe", [&](int64_t r0, int64_t r1) { sums[(size_t)r0] = (int32_t)k->stream_read(w + r0 * row_bytes, (r1 - r0) * row_bytes, 0); }},
  };
  std::vector<std::vector<double>> gbs(layouts.size());
  for (int rep = 0; rep < reps; rep++) {
    for (size_t l = 0; l < layouts.size(); l++) {
      const double t0 = now();
      std::thread other([&] { layouts[l].second(0, rows / 2); });
      layouts[l].second(rows / 2, rows);
      other.join();
      gbs[l].push_back((double)rows * row_bytes / (now() - t0) / 1e9);
    }
  }
  printf("avx512vnni, 2 threads, %lld rows × %lld columns (%.0f MB), %d repetitions per layout\n", (long long)rows,
         (long long)cols, rows * row_bytes / 1e6, reps);
  for (size_t l = 0; l < layouts.size(); l++) {
    auto s = gbs[l];
    std::sort(s.begin(), s.end());
    printf("  %-10s median %5.1f GB/s  (%.1f-%.1f)\n", layouts[l].first, s[s.size() / 2], s.front(), s.back());
  }
}
