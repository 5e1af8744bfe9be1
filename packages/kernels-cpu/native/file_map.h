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

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace bitnet {

struct FileMap {
  uint8_t* reserve = nullptr;  // the whole reservation (what munmap releases)
  size_t reserve_size = 0;
  uint8_t* data = nullptr;  // the mapped bytes of [start, start + size)
  size_t size = 0;
};

constexpr uint64_t kHugePage = 2u << 20;

// Maps [start, start + length) of fd read-only and faults every page in now, so no step pays
// page faults. `start` must be a multiple of the page size. Returns an errno-style message on
// failure ("" on success).
inline std::string map_file(int fd, uint64_t start, size_t length, FileMap& out) {
  const size_t reserve_size = length + kHugePage;
  void* r = ::mmap(nullptr, reserve_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
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
  ::madvise(m, length, MADV_HUGEPAGE);
  if (::madvise(m, length, MADV_POPULATE_READ) != 0) {
    // Kernels before 5.14: touch every page instead.
    const long page = ::sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < length; i += (size_t)page) sink = sink + ((const uint8_t*)m)[i];
    (void)sink;
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
}

}  // namespace bitnet
