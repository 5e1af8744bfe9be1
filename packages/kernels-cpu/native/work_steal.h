// ---------------------------------------------------------------------------------------------
// Rows of one matrix op shared by threads that may run at different speeds. Each thread owns
// the contiguous share a static split would give it and walks it front to back (one sequential
// stream for the hardware prefetcher); a thread that runs out takes rows from the back of
// another's unclaimed rest. On a VM whose two vCPUs stream at different rates from moment to
// moment, a static split makes the faster thread wait at every barrier; here both finish
// within a few rows of each other.
//
// Claims are halving: the owner takes half of its unclaimed rows (rounded to `align`, at least
// `min_rows`) per claim, a thief half of what is left, so a thread makes a handful of atomic
// claims per op instead of one per fixed chunk (each is a full fence on x86).
// ---------------------------------------------------------------------------------------------
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include "common.h"
#include "threadpool.h"

namespace bitnet {

struct alignas(64) RowSteal {
  // Unclaimed rows [front, back), packed as front | back << 32 so one compare-and-swap claims.
  std::atomic<uint64_t> range{0};
  int64_t align = 1;
  int64_t min_rows = 1;
};

inline uint64_t row_steal_pack(int64_t front, int64_t back) { return (uint64_t)front | ((uint64_t)back << 32); }

// Sets each of nth threads' unclaimed rows to its static share of rows (in units of align rows).
inline void row_steal_reset(RowSteal* s, int nth, int64_t rows, int64_t align, int64_t min_rows = 0) {
  const int64_t units = (rows + align - 1) / align;
  for (int t = 0; t < nth; t++) {
    int64_t u0, u1;
    share(units, t, nth, u0, u1);
    s[t].range.store(row_steal_pack(std::min(rows, u0 * align), std::min(rows, u1 * align)), std::memory_order_relaxed);
    s[t].align = align;
    s[t].min_rows = std::max(align, min_rows);
  }
}

// Claims rows from the front (owner) or the back (thief) of s; false when none are left.
inline bool row_steal_claim(RowSteal& s, bool from_front, int64_t& r0, int64_t& r1) {
  uint64_t v = s.range.load(std::memory_order_acquire);
  for (;;) {
    const int64_t front = (int64_t)(v & 0xffffffffu), back = (int64_t)(v >> 32);
    if (front >= back) return false;
    const int64_t left = back - front;
    int64_t n = (left / 2 + s.align - 1) / s.align * s.align;
    n = std::min(left, std::max(n, s.min_rows));
    const uint64_t next = from_front ? row_steal_pack(front + n, back) : row_steal_pack(front, back - n);
    if (s.range.compare_exchange_weak(v, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
      r0 = from_front ? front : back - n;
      r1 = from_front ? front + n : back;
      return true;
    }
  }
}

// Runs rows(r0, r1) on thread tid's share, then on rows taken from the others' shares.
template <typename F>
inline void row_steal_run(RowSteal* s, int tid, int nth, F&& rows) {
  int64_t r0, r1;
  while (row_steal_claim(s[tid], true, r0, r1)) rows(r0, r1);
  for (int k = 1; k < nth; k++) {
    RowSteal& victim = s[(tid + k) % nth];
    while (row_steal_claim(victim, false, r0, r1)) rows(r0, r1);
  }
}

}  // namespace bitnet
