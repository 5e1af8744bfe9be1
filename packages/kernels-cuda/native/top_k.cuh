// The top-k of a logits row on the executor, so that a greedy or top-k step copies k ids and
// values back instead of the whole vocabulary row (0.5 MB at 128k entries). The ranking is
// engine-core's topKRows: higher value first, equal values lower id first, NaN after every
// number (all NaN equal). Shared by the CUDA kernel (kernels.cu) and its host twin (host.cc).
//
// The selection is a radix select on a 32-bit rank key: four passes of 8-bit digits, each
// counting the digit over the elements that match the digits chosen so far, find the k-th
// largest key; then the elements above it and, in id order, as many equal to it as are still
// missing, and a rank sort of those k.
#pragma once
#include <cstdint>
#include <cstring>

#include "ternary.cuh"

namespace bitnet_cuda {

// The most a step's row may ask for on the executor; larger k comes back as the full row.
constexpr int kMaxDeviceTopK = 256;

// A key whose unsigned order is the ranking's: NaN lowest (0), −0 and +0 the same.
BITNET_HD uint32_t top_k_key(float v) {
  uint32_t b;
#if defined(__CUDA_ARCH__)
  b = __float_as_uint(v);
#else
  std::memcpy(&b, &v, 4);
#endif
  const uint32_t magnitude = b & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return 0;
  if (magnitude == 0) return 0x80000000u;
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

// Whether (key a, id a) ranks before (key b, id b).
BITNET_HD bool top_k_before(uint32_t key_a, int32_t id_a, uint32_t key_b, int32_t id_b) {
  return key_a > key_b || (key_a == key_b && id_a < id_b);
}

// One radix pass's choice: scanning the 256 digit counts from the highest digit down, the digit
// that holds the `remaining`-th largest of the matching elements. Returns it and leaves in
// `remaining` how many of the elements with that digit are still to be taken.
BITNET_HD int top_k_pick_digit(const uint32_t* counts, int32_t* remaining) {
  uint32_t above = 0;
  for (int d = 255; d > 0; d--) {
    if (above + counts[d] >= (uint32_t)*remaining) {
      *remaining -= (int32_t)above;
      return d;
    }
    above += counts[d];
  }
  *remaining -= (int32_t)above;
  return 0;
}

}  // namespace bitnet_cuda
