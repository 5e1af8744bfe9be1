// Read-only file mappings that the kernel can map with 2 MiB page-table entries.
//
// Weights are streamed once per token, so with 4 KiB pages a 1.2 GB file walks ~290k page-table
// entries per token. The kernel maps a file with 2 MiB entries only where (a) the page cache holds
// it in 2 MiB folios and (b) the virtual address and the file offset agree modulo 2 MiB. For (a),
// MADV_HUGEPAGE before the first fault makes the kernel read an uncached file in as 2 MiB folios
// (measured here, ext4 on Linux 6.18: FilePmdMapped 0 → 1.16 GB of the bench-i2s file); a file
// already cached in small folios stays in 4 KiB pages until it is evicted. For (b), recent
// kernels align large file mappings themselves; older ones do not, so the address is chosen here.
// `pmd_mapped_bytes` reports which case a load got. (On the VM where this was written, which
// physical memory backs the page cache moved same-file read bandwidth between 19 and 30 GB/s
// from run to run, more than page size did, so no speed figure is claimed for this alone.)
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "platform.h"

// Linux ≥ 5.14 faults a range in with one call; older headers lack the name. Elsewhere pages
// are touched one by one.
#if defined(__linux__) && !defined(MADV_POPULATE_READ)
#define MADV_POPULATE_READ 22
#endif

namespace bitnet {

struct FileMap {
  uint8_t* reserve = nullptr;  // the whole reservation (what munmap releases)
  size_t reserve_size = 0;
  uint8_t* data = nullptr;  // the mapped bytes of [start, start + size)
  size_t size = 0;
  uint64_t reread_bytes = 0;  // cached bytes dropped to be read back in 2 MiB folios (map_file)
};

constexpr uint64_t kHugePage = 2u << 20;

// Bytes faulted in per call while prefaulting (a multiple of 2 MiB), so progress can be reported.
constexpr size_t kPrefaultChunk = 32u << 20;

// Pages of [p, p + n) of a file mapping (p page-aligned) that the page cache holds; 0 where
// mincore cannot say (other systems: every piece is then taken as uncached).
inline size_t cached_pages(const uint8_t* p, size_t n) {
#ifndef __linux__
  (void)p, (void)n;
  return 0;
#else
  const size_t page = page_size();
  unsigned char resident[512];
  size_t cached = 0;
  for (size_t done = 0; done < n;) {
    const size_t len = std::min(n - done, sizeof resident * page);
    if (::mincore((void*)(p + done), len, resident) != 0) return 0;
    for (size_t i = 0; i < (len + page - 1) / page; i++) cached += resident[i] & 1;
    done += len;
  }
  return cached;
#endif
}

// Drops [offset, offset + n) of fd from the page cache, but the pages another process maps or
// has dirty (POSIX_FADV_DONTNEED). False where that is not done.
inline bool drop_from_page_cache(int fd, uint64_t offset, size_t n) {
#ifndef __linux__
  (void)fd, (void)offset, (void)n;
  return false;
#else
  return ::posix_fadvise(fd, (off_t)offset, (off_t)n, POSIX_FADV_DONTNEED) == 0;
#endif
}

// Maps [start, start + length) of fd read-only and faults every page in now, so no step pays
// page faults. `start` must be a multiple of the page size. `on_prefault`, when given, is called
// with 0 once mapped, then with the bytes faulted in after each chunk. Returns an errno-style message on failure ("" on
// success).
inline std::string map_file(int fd, uint64_t start, size_t length, FileMap& out,
                            const std::function<void(uint64_t bytes)>& on_prefault = {}) {
  const size_t reserve_size = length + kHugePage;
#ifdef MAP_NORESERVE
  const int reserve_flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
#else
  const int reserve_flags = MAP_PRIVATE | MAP_ANONYMOUS;  // e.g. FreeBSD: PROT_NONE reserves no swap anyway
#endif
  void* r = ::mmap(nullptr, reserve_size, PROT_NONE, reserve_flags, -1, 0);
  if (r == MAP_FAILED) return std::strerror(errno);
  const uint64_t base = (uint64_t)r;
  // The first address ≥ base that is ≡ start (mod 2 MiB).
  const uint64_t want = start % kHugePage;
  const uint64_t addr = base + ((want - base % kHugePage) + kHugePage) % kHugePage;
  void* m = ::mmap((void*)addr, length, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, (off_t)start);
  if (m == MAP_FAILED) {
    const std::string why = std::strerror(errno);
    ::munmap(r, reserve_size);
    return why;
  }
  advise_huge_pages(m, length);
  if (on_prefault) on_prefault(0);  // mapped; faulting in starts
  // Pieces end on 2 MiB boundaries of the address (and so of the file), so each huge folio is
  // faulted by one call.
  //
  // A 2 MiB range the page cache holds only in part (the kernel reclaimed some of it: memory
  // pressure, or proactive reclaim of cold unmapped page cache, such as the DAMON `pageout`
  // scheme of the VMs this project is developed on) would be faulted back in around the pages
  // still cached, in small folios, and stay in 4 KiB page-table entries for as long as it stays
  // cached: bench-i2s loaded 72% in 2 MiB pages that way, and decoded ~10% slower (its F16 head
  // read 28-29 GB/s where the same bytes in 2 MiB folios read 33-35). Its cached rest is dropped
  // first, so the fault reads the whole range back as one 2 MiB folio; the extra reading is only
  // what was left of those ranges (out.reread_bytes).
  //
  // Pieces not cached in whole are faulted first, and the cached ones last: a cached range in
  // small folios (the GGUF header, read with read() just before) carries readahead marks, and
  // faulting it first started readahead of the uncached ranges after it in small folios as well
  // (bench-i2s: 27 ranges, 54 MB, where its header is 8 MB). Faulted after them, its marks find
  // those ranges already read in 2 MiB folios.
  const uint64_t at = (uint64_t)m;
  const size_t page = page_size();
  std::vector<std::pair<size_t, size_t>> pieces;  // [begin, end) offsets in the mapping
  std::vector<char> cached_pieces;
  out.reread_bytes = 0;
  for (size_t done = 0; done < length;) {
    const size_t end = std::min<size_t>(length, (size_t)(((at + done + kHugePage) & ~(kHugePage - 1)) - at));
    const size_t pages = (end - done + page - 1) / page;
    const size_t cached = cached_pages((const uint8_t*)m + done, end - done);
    if (cached > 0 && cached < pages && end - done == kHugePage && drop_from_page_cache(fd, start + done, kHugePage)) {
      out.reread_bytes += cached * page;
    }
    pieces.emplace_back(done, end);
    cached_pieces.push_back(cached == pages ? 1 : 0);
    done = end;
  }
  bool populate = true;
  for (char pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < pieces.size();) {
      if (cached_pieces[i] != pass) {
        i++;
        continue;
      }
      // Consecutive pieces of this pass, up to kPrefaultChunk per call (for progress reports).
      size_t j = i + 1;
      while (j < pieces.size() && cached_pieces[j] == pass && pieces[j].second - pieces[i].first <= kPrefaultChunk) j++;
      const size_t done = pieces[i].first, end = pieces[j - 1].second;
      uint8_t* p = (uint8_t*)m + done;
#ifdef MADV_POPULATE_READ
      if (populate && ::madvise(p, end - done, MADV_POPULATE_READ) != 0) populate = false;
#else
      populate = false;
#endif
      if (!populate) {
        // Kernels before 5.14, and other systems: touch every page instead.
        volatile uint8_t sink = 0;
        for (size_t k = 0; done + k < end; k += page) sink = sink + p[k];  // p is page-aligned
        (void)sink;
      }
      if (on_prefault) on_prefault(end - done);
      i = j;
    }
  }
  out.reserve = (uint8_t*)r;
  out.reserve_size = reserve_size;
  out.data = (uint8_t*)m;
  out.size = length;
  return "";
}

inline void unmap_file(FileMap& map) {
  if (map.reserve != nullptr) ::munmap(map.reserve, map.reserve_size);
  map = FileMap{};
}

// Bytes of the mapping the kernel maps with 2 MiB entries, from /proc/self/smaps (0 where that
// cannot be read).
inline uint64_t pmd_mapped_bytes(const FileMap& map) {
#ifndef __linux__
  (void)map;
  return 0;  // no /proc/self/smaps, and no file THP accounting to read
#else
  if (map.data == nullptr) return 0;
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return 0;
  char line[512];
  bool inside = false;
  uint64_t kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {  // a mapping's header line
      inside = lo < (uint64_t)map.data + map.size && hi > (uint64_t)map.data;
      continue;
    }
    unsigned long value = 0;
    if (inside && std::sscanf(line, "FilePmdMapped: %lu kB", &value) == 1) kb += value;
  }
  std::fclose(f);
  return kb * 1024;
#endif
}

}  // namespace bitnet
