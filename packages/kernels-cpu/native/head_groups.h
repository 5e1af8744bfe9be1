// ---------------------------------------------------------------------------------------------
// Attention reads each key or value row once for all the query heads that share its KV head (or
// the rows of a prompt's tile of tokens), up to four per pass, eight with AVX-512's 32 registers
// (a kernel templated on the count keeps its accumulators in registers).
// Included inside namespace bitnet { namespace { … } } of the AVX2 and AVX-512 kernel files,
// within their target pragmas, so every instruction-set build keeps its own copy.
// ---------------------------------------------------------------------------------------------
#pragma once

// Calls pass(std::integral_constant<int, n>{}, the group's first input row, its first output
// row) for consecutive groups of n ≤ Max heads (4 or 8) of the nq (head h reads in + h ×
// in_stride and writes out + h × out_stride: queries and scores, or probabilities and outputs).
template <int Max = 4, typename Pass>
inline void for_head_groups(const float* in, int64_t nq, int64_t in_stride, float* out, int64_t out_stride, Pass&& pass) {
  static_assert(Max == 4 || Max == 8, "groups of up to 4 or 8 heads");
  for (int64_t h = 0; h < nq;) {
    const int64_t n = std::min<int64_t>(Max, nq - h);
    const float* ih = in + h * in_stride;
    float* oh = out + h * out_stride;
    if constexpr (Max == 8) {
      switch (n) {
        case 8: pass(std::integral_constant<int, 8>{}, ih, oh); break;
        case 7: pass(std::integral_constant<int, 7>{}, ih, oh); break;
        case 6: pass(std::integral_constant<int, 6>{}, ih, oh); break;
        case 5: pass(std::integral_constant<int, 5>{}, ih, oh); break;
        default: break;
      }
    }
    switch (n) {
      case 4: pass(std::integral_constant<int, 4>{}, ih, oh); break;
      case 3: pass(std::integral_constant<int, 3>{}, ih, oh); break;
      case 2: pass(std::integral_constant<int, 2>{}, ih, oh); break;
      case 1: pass(std::integral_constant<int, 1>{}, ih, oh); break;
      default: break;
    }
    h += n;
  }
}

// Positions per tile of the value pass: a kernel that walks the positions once per group of
// output lanes (two to eight passes for a 128-wide head) reads a tile's rows (kvw f16 values
// each) from L1 after the first pass instead of from memory every pass. 16 KiB: half the
// smallest L1 of the x86 cores this runs on, beside the probabilities and outputs.
inline int64_t value_tile_positions(int64_t kvw) {
  return std::max<int64_t>(16, 16 * 1024 / std::max<int64_t>(1, 2 * kvw));
}

// The value pass of attention over tiles of positions (value_tile_positions), up to Max heads
// at a time within each: calls pass(heads, the group's probabilities from the tile's first
// position, the tile's first value row, the tile's positions, the group's outputs, carry, next),
// where carry says the outputs hold the sums over earlier positions (earlier tiles, or with
// `carry` earlier calls) to continue in position order, and next is the next tile's first row
// (nullptr for the last tile).
template <int Max = 4, typename Pass>
inline void for_value_tiles(const float* p, int64_t nq, int64_t p_stride, const uint16_t* v, int64_t kvw, int64_t hd,
                            int64_t len, float* out, bool carry, Pass&& pass) {
  const int64_t tile = value_tile_positions(kvw);
  for (int64_t j0 = 0; j0 < len; j0 += tile) {
    const int64_t n = std::min(tile, len - j0);
    // The next tile's first n rows (it may be shorter: a prefetch past the values never faults).
    const uint16_t* next = j0 + tile < len ? v + (j0 + tile) * kvw : nullptr;
    for_head_groups<Max>(p + j0, nq, p_stride, out, hd, [&](auto heads, const float* ph, float* oh) {
      pass(heads, ph, v + j0 * kvw, n, oh, carry || j0 > 0, next);
    });
  }
}
