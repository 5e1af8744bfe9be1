// ---------------------------------------------------------------------------------------------
// The k best logits of each row, as engine-core's topKRows ranks them: higher value first, equal
// values by lower id, every NaN after every number (NaNs by id). A sampler or a greedy decoder
// needs a handful of a 128k-entry row; in JavaScript a pass over such a row takes ~0.1 ms (three
// cycles an entry) and a sampler's top-k ~0.3, here one comparison an entry against the worst
// value kept.
// ---------------------------------------------------------------------------------------------
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace bitnet {

// Row r's best min(k, vocab) at ids[r × k …] and values[r × k …] (k ≥ 1).
inline void top_k_rows(const float* logits, int64_t rows, int64_t vocab, int64_t k, int32_t* ids, float* values) {
  const int64_t keep = std::min(k, vocab);
  // "a ranks before b" (numbers only): higher value, or the same value and a lower id.
  for (int64_t r = 0; r < rows; r++) {
    const float* row = logits + r * vocab;
    int32_t* out_ids = ids + r * k;
    float* out_values = values + r * k;
    int64_t size = 0;
    if (keep <= 256) {
      // Kept sorted best first; a value below the worst kept (or equal to it, from a later id,
      // or NaN) cannot enter, and that one test is all most entries cost.
      float floor = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < vocab; i++) {
        const float v = row[i];
        if (!(v >= floor) || (size == keep && v == floor)) continue;
        int64_t j = size < keep ? size++ : keep - 1;
        for (; j > 0 && out_values[j - 1] < v; j--) {
          out_values[j] = out_values[j - 1];
          out_ids[j] = out_ids[j - 1];
        }
        out_values[j] = v;
        out_ids[j] = (int32_t)i;
        if (size == keep) floor = out_values[keep - 1];
      }
    } else {
      // Many kept (a caller asking for most of the vocabulary): a partial sort of the numbers.
      std::vector<int32_t> order;
      order.reserve((size_t)vocab);
      for (int64_t i = 0; i < vocab; i++) {
        if (!std::isnan(row[i])) order.push_back((int32_t)i);
      }
      size = std::min<int64_t>(keep, (int64_t)order.size());
      std::partial_sort(order.begin(), order.begin() + size, order.end(),
                        [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
      for (int64_t j = 0; j < size; j++) {
        out_ids[j] = order[(size_t)j];
        out_values[j] = row[order[(size_t)j]];
      }
    }
    // Fewer numbers than asked for: the NaNs follow, by id.
    for (int64_t i = 0; size < keep && i < vocab; i++) {
      if (std::isnan(row[i])) {
        out_ids[size] = (int32_t)i;
        out_values[size] = row[i];
        size++;
      }
    }
  }
}

}  // namespace bitnet
