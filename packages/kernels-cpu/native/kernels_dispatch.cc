// Run-time choice of the kernel path.
#include <cstdlib>
#include <cstring>
#include "kernels.h"

namespace bitnet {

int available_kernel_paths(const char** out, int max) {
  int n = 0;
  const Kernels* all[] = {&kernels_scalar(), kernels_neon(),    kernels_neon_dotprod(), kernels_neon_i8mm(),
                          kernels_avx2(),    kernels_avxvnni(), kernels_avx512vnni()};
  for (const Kernels* k : all) {
    if (k != nullptr && n < max) {
      out[n++] = k->name;
    }
  }
  if (kernels_avx512vnni() != nullptr && amx_available() && n < max) {
    out[n++] = "amx";  // AVX-512 VNNI plus the AMX prefill GEMM
  }
  return n;
}

DecodePrefetch default_decode_prefetch() {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_is("intel")) return {2048, 2048, 16384, 6144, 3072, 256, 256, false};
#endif
  return {6144, 6144, 0, 0, 4096, 512, 512, true};
}

// A prefetch distance from the environment: a multiple of 64 bytes up to 64 KiB, else fallback.
// (The backend refuses other values with a typed error before the addon reads them.)
static int64_t prefetch_bytes_from_env(const char* name, int64_t fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  return *end == '\0' && v >= 0 && v <= 65536 && v % 64 == 0 ? (int64_t)v : fallback;
}

const DecodePrefetch& decode_prefetch() {
  static const DecodePrefetch chosen = [] {
    DecodePrefetch p = default_decode_prefetch();
    p.i2s = prefetch_bytes_from_env("BITNET_DECODE_PREFETCH_BYTES", p.i2s);
    p.other = prefetch_bytes_from_env("BITNET_DECODE_PREFETCH_BYTES", p.other);
    // One variable for both L2 distances (a process runs one path); −1: not set or not usable.
    const int64_t l2 = prefetch_bytes_from_env("BITNET_DECODE_PREFETCH_L2_BYTES", -1);
    if (l2 >= 0) p.l2 = p.l2_avx2 = l2;
    p.head = prefetch_bytes_from_env("BITNET_DECODE_PREFETCH_HEAD_BYTES", p.head);
    const char* bits = std::getenv("BITNET_DECODE_VECTOR_BITS");
    if (bits != nullptr && (std::strcmp(bits, "256") == 0 || std::strcmp(bits, "512") == 0)) p.vector_bits = std::atoi(bits);
    const char* head_bits = std::getenv("BITNET_HEAD_VECTOR_BITS");
    if (head_bits != nullptr && (std::strcmp(head_bits, "256") == 0 || std::strcmp(head_bits, "512") == 0)) {
      p.head_bits = std::atoi(head_bits);
    }
    const char* nta = std::getenv("BITNET_DECODE_PREFETCH_NTA");
    if (nta != nullptr && (std::strcmp(nta, "0") == 0 || std::strcmp(nta, "1") == 0)) p.non_temporal = nta[0] == '1';
    return p;
  }();
  return chosen;
}

const Kernels* select_kernels(const char* name) {
  if (name == nullptr || std::strcmp(name, "auto") == 0) {
    if (const Kernels* k = kernels_avx512vnni()) return k;
    if (const Kernels* k = kernels_avxvnni()) return k;
    if (const Kernels* k = kernels_avx2()) return k;
    if (const Kernels* k = kernels_neon_i8mm()) return k;
    if (const Kernels* k = kernels_neon_dotprod()) return k;
    if (const Kernels* k = kernels_neon()) return k;
    return &kernels_scalar();
  }
  if (std::strcmp(name, "scalar") == 0) return &kernels_scalar();
  if (std::strcmp(name, "avx2") == 0) return kernels_avx2();
  if (std::strcmp(name, "avxvnni") == 0) return kernels_avxvnni();
  if (std::strcmp(name, "avx512vnni") == 0) return kernels_avx512vnni();
  if (std::strcmp(name, "neon") == 0) return kernels_neon();
  if (std::strcmp(name, "neon-dotprod") == 0) return kernels_neon_dotprod();
  if (std::strcmp(name, "neon-i8mm") == 0) return kernels_neon_i8mm();
  return nullptr;
}

}  // namespace bitnet
