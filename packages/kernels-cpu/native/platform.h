// ---------------------------------------------------------------------------------------------
// The few OS facilities the addon uses beyond POSIX, each behind the feature macro itself so the
// addon compiles on macOS and the BSDs and degrades there: no transparent huge pages (a hint
// that is simply not given), no MADV_POPULATE_READ (pages are touched instead), no
// /proc/self/smaps (hugeMappedBytes reads 0). scripts/check-portability.mjs compiles every source
// with these macros and __linux__ hidden, and for aarch64, so the fallbacks stay valid.
// ---------------------------------------------------------------------------------------------
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

namespace bitnet {

// The OS page size (4 KiB on x86 Linux, 16 KiB on Apple silicon).
inline size_t page_size() {
  static const size_t size = (size_t)::sysconf(_SC_PAGESIZE);
  return size;
}

// One core's L2 in bytes as the C library reports it (glibc: from CPUID on x86), 0 where it
// cannot say (macOS has no _SC_LEVEL2_CACHE_SIZE; some ARM Linux systems report 0).
inline int64_t l2_cache_bytes() {
#ifdef _SC_LEVEL2_CACHE_SIZE
  const long n = ::sysconf(_SC_LEVEL2_CACHE_SIZE);
  return n > 0 ? (int64_t)n : 0;
#else
  return 0;
#endif
}

// `size` bytes aligned to `align` (a power of two, a multiple of sizeof(void*)), released with
// std::free; nullptr when out of memory. posix_memalign rather than std::aligned_alloc, which
// older macOS deployment targets lack.
inline uint8_t* alloc_aligned(size_t align, size_t size) {
  void* p = nullptr;
  return ::posix_memalign(&p, align, size) == 0 ? (uint8_t*)p : nullptr;
}

// A std::vector allocator that starts every buffer on a 64-byte cache line. glibc's malloc
// returns large blocks 16 bytes past a page boundary, so with plain vectors every 64-byte
// activation load of the AVX-512 kernels (and every other 32-byte load of the AVX2 ones) spanned
// two cache lines: the I2_S prefill kernel ran at 157 GMAC/s on one Zen 5 core instead of 303
// (AVX2: 123 instead of 147), bench/gemm.cc with QOFF=16 against QOFF=0.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::size_t kAlign = 64;
  CacheLineAllocator() noexcept = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlign))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(kAlign)); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const CacheLineAllocator<U>&) const noexcept { return false; }
};
template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Asks for transparent huge pages on [p, p + n) (Linux); elsewhere a no-op.
inline void advise_huge_pages(void* p, size_t n) {
#ifdef MADV_HUGEPAGE
  ::madvise(p, n, MADV_HUGEPAGE);
#else
  (void)p;
  (void)n;
#endif
}

// Lets the OS drop the pages of [p, p + n) of a private read-only file mapping from resident
// memory (they are read back from the file if touched again). p is rounded down to a page; n is
// the length from there.
inline void advise_dont_need(const void* p, size_t n) {
#ifdef MADV_DONTNEED
  ::madvise((void*)((uintptr_t)p & ~((uintptr_t)page_size() - 1)), n, MADV_DONTNEED);
#else
  (void)p;
  (void)n;
#endif
}

// Address space for `bytes` of anonymous memory that the OS backs page by page as it is first
// written (MAP_NORESERVE: not counted against the commit limit where overcommit allows), read
// as zeros before that; no transparent huge pages (MADV_NOHUGEPAGE), so resident memory follows
// the pages written whatever the system's THP mode. Move-only; unmapped by the destructor.
// data() is nullptr for an empty reservation.
class PageReservation {
 public:
  PageReservation() = default;
  // Throws std::bad_alloc when the address space cannot be had.
  explicit PageReservation(size_t bytes) : size_(bytes) {
    if (bytes == 0) return;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_NORESERVE
    flags |= MAP_NORESERVE;
#endif
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_NOHUGEPAGE
    ::madvise(p, bytes, MADV_NOHUGEPAGE);
#endif
    data_ = (uint8_t*)p;
  }
  ~PageReservation() { release(); }
  PageReservation(PageReservation&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  PageReservation& operator=(PageReservation&& o) noexcept {
    if (this != &o) {
      release();
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  PageReservation(const PageReservation&) = delete;
  PageReservation& operator=(const PageReservation&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release() {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace bitnet
