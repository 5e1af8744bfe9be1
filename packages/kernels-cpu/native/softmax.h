// The attention softmax of a few score rows, shared by the model step and the addon's test entry.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels.h"

namespace bitnet {

// Adds R rows' values over positions [from, to) to their double sums, each row in position
// order. The sums live in registers for the whole run (R is a constant): kept in an array
// indexed by a runtime row count they went through memory every position, each add waiting on a
// store, and that chain was most of a long prompt's softmax.
template <int R>
inline void add_rows_in_order(const float* base, int64_t stride, int64_t from, int64_t to, double* sums) {
  double s[R];
  for (int r = 0; r < R; r++) s[r] = sums[r];
  for (int64_t i = from; i < to; i++) {
    for (int r = 0; r < R; r++) s[r] += (double)base[r * stride + i];
  }
  for (int r = 0; r < R; r++) sums[r] = s[r];
}

// Scales, then softmaxes `rows` rows of attention scores in place (row r at scores + r * stride,
// row_length(r) scores long) with the reference's arithmetic: each row's maximum, exp(s − max)
// by the path's exp (both in the path's softmax_exp, kernels.h; the maximum is exact in any
// order), the sum of the exponentials in double, added in position order, and each value times
// the float reciprocal of the sum. Added one element at a time, a row's sum is a chain of
// dependent double adds (~4 cycles each), so up to eight rows' sums advance side by side over the
// positions they share (then each row's own last positions) and the CPU overlaps their chains.
// Rows of different lengths are a prompt's tokens scored together (the model's attention tiles).
template <typename RowLength>
inline void softmax_ragged_rows(const Kernels& k, float* scores, int64_t rows, int64_t stride, float scale,
                                RowLength&& row_length) {
  constexpr int64_t kRowsAtOnce = 8;
  double sums[kRowsAtOnce];
  for (int64_t r0 = 0; r0 < rows; r0 += kRowsAtOnce) {
    const int64_t nr = std::min(kRowsAtOnce, rows - r0);
    int64_t shared = INT64_MAX;
    for (int64_t r = 0; r < nr; r++) {
      const int64_t len = row_length(r0 + r);
      shared = std::min(shared, len);
      k.softmax_exp(scores + (r0 + r) * stride, len, scale);
      sums[r] = 0.0;
    }
    const float* base = scores + r0 * stride;
    switch (nr) {
      case 8: add_rows_in_order<8>(base, stride, 0, shared, sums); break;
      case 7: add_rows_in_order<7>(base, stride, 0, shared, sums); break;
      case 6: add_rows_in_order<6>(base, stride, 0, shared, sums); break;
      case 5: add_rows_in_order<5>(base, stride, 0, shared, sums); break;
      case 4: add_rows_in_order<4>(base, stride, 0, shared, sums); break;
      case 3: add_rows_in_order<3>(base, stride, 0, shared, sums); break;
      case 2: add_rows_in_order<2>(base, stride, 0, shared, sums); break;
      default: add_rows_in_order<1>(base, stride, 0, shared, sums); break;
    }
    for (int64_t r = 0; r < nr; r++) {
      add_rows_in_order<1>(base + r * stride, stride, shared, row_length(r0 + r), sums + r);
    }
    for (int64_t r = 0; r < nr; r++) {
      const int64_t len = row_length(r0 + r);
      float* sr = scores + (r0 + r) * stride;
      const float inv = (float)(1.0 / sums[r]);
      for (int64_t i = 0; i < len; i++) sr[i] = sr[i] * inv;
    }
  }
}

// `rows` rows of `len` scores, `stride` apart.
inline void softmax_rows(const Kernels& k, float* scores, int64_t rows, int64_t len, int64_t stride, float scale) {
  softmax_ragged_rows(k, scores, rows, stride, scale, [len](int64_t) { return len; });
}

}  // namespace bitnet
