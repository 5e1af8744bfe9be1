// Forced include (g++ -include) for scripts/check-portability.mjs: compiles the sources as if for a
// POSIX system that is not Linux (macOS, the BSDs). The system headers are pulled in first, so
// their include guards make every later #include of them a no-op; then what only Linux or glibc
// offers is hidden, so the code must take its fallback branches, and what other systems lack is
// poisoned.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

// Linux-only mmap / madvise flags.
#undef MADV_HUGEPAGE
#undef MADV_NOHUGEPAGE
#undef MADV_POPULATE_READ
#undef MADV_POPULATE_WRITE
#undef MAP_POPULATE
#undef MAP_HUGETLB
#undef MAP_NORESERVE  // FreeBSD has none

// The system itself.
#undef __linux__
#undef __linux
#undef linux
#undef __gnu_linux__
#undef __GLIBC__

// Functions missing on some targets: aligned_alloc before macOS 10.15.
#pragma GCC poison aligned_alloc
