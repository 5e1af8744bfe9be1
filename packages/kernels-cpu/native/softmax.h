// The attention softmax of a few score rows, shared by the model step and the addon's test entry.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels.h"

namespace bitnet {

// Scales, then softmaxes `rows` rows of `len` attention scores in place (row r at scores + r *
// len) with the reference's arithmetic: each row's maximum, exp(s − max) by the path's exp, the
// sum of the exponentials in double, added in position order, and each value times the float
// reciprocal of the sum. Written element by element, two loops were chains of dependent
// operations (a maximum, then a double add, ~4 cycles each), about a third of a long prompt's
// attention. The maximum is exact in any order, so it is taken over eight interleaved partial
// maxima (std::max skips a NaN as the serial loop did); the sums keep their order within a row,
// and up to eight rows' sums advance side by side, so the CPU overlaps their chains.
inline void softmax_rows(const Kernels& k, float* scores, int64_t rows, int64_t len, float scale) {
  constexpr int64_t kRowsAtOnce = 8;
  double sums[kRowsAtOnce];
  for (int64_t r0 = 0; r0 < rows; r0 += kRowsAtOnce) {
    const int64_t nr = std::min(kRowsAtOnce, rows - r0);
    for (int64_t r = 0; r < nr; r++) {
      float* sr = scores + (r0 + r) * len;
      for (int64_t j = 0; j < len; j++) sr[j] = sr[j] * scale;
      float part[8];
      for (float& m : part) m = -INFINITY;
      int64_t j = 0;
      for (; j + 8 <= len; j += 8) {
        for (int i = 0; i < 8; i++) part[i] = std::max(part[i], sr[j + i]);
      }
      for (; j < len; j++) part[0] = std::max(part[0], sr[j]);
      float max = part[0];
      for (int i = 1; i < 8; i++) max = std::max(max, part[i]);
      for (int64_t i = 0; i < len; i++) sr[i] = sr[i] - max;
      k.exp(sr, sr, len);
      sums[r] = 0.0;
    }
    const float* base = scores + r0 * len;
    for (int64_t i = 0; i < len; i++) {
      for (int64_t r = 0; r < nr; r++) sums[r] += (double)base[r * len + i];
    }
    for (int64_t r = 0; r < nr; r++) {
      float* sr = scores + (r0 + r) * len;
      const float inv = (float)(1.0 / sums[r]);
      for (int64_t i = 0; i < len; i++) sr[i] = sr[i] * inv;
    }
  }
}

}  // namespace bitnet
