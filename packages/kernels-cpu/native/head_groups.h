// ---------------------------------------------------------------------------------------------
// Attention scores read each key row once for all the query heads that share its KV head, up
// to four per pass (a kernel templated on the count keeps its accumulators in registers).
// Included inside namespace bitnet { namespace { … } } of the AVX2 and AVX-512 kernel files,
// within their target pragmas, so every instruction-set build keeps its own copy.
// ---------------------------------------------------------------------------------------------
#pragma once

// Calls pass(std::integral_constant<int, n>{}, q of the group's first head, its scores) for
// consecutive groups of n ≤ 4 of the nq heads (q: nq × hd, scores: nq rows of score_stride).
template <typename Pass>
inline void for_head_groups(const float* q, int64_t nq, int64_t hd, float* scores, int64_t score_stride, Pass&& pass) {
  for (int64_t h = 0; h < nq;) {
    const int64_t n = std::min<int64_t>(4, nq - h);
    const float* qh = q + h * hd;
    float* sh = scores + h * score_stride;
    switch (n) {
      case 4: pass(std::integral_constant<int, 4>{}, qh, sh); break;
      case 3: pass(std::integral_constant<int, 3>{}, qh, sh); break;
      case 2: pass(std::integral_constant<int, 2>{}, qh, sh); break;
      default: pass(std::integral_constant<int, 1>{}, qh, sh); break;
    }
    h += n;
  }
}
