// ---------------------------------------------------------------------------------------------
// Keeps the prebuilt addon loadable on glibc 2.34 (Ubuntu 22.04, RHEL 9, Amazon Linux 2023)
// although it is built against a newer one. libstdc++ is linked statically (binding.gyp), and its
// std::random_device object refers to arc4random, which glibc added in 2.36: that one reference
// alone would make the loader refuse the addon on older systems. The addon never uses
// random_device; this hidden definition satisfies the reference at link time through the
// getrandom system call (Linux 3.17+), so no GLIBC_2.36 symbol is asked for.
// scripts/prebuilds.mjs records the newest glibc version the result needs in its manifest.
// ---------------------------------------------------------------------------------------------
#include <cerrno>
#include <cstdint>  // defines __GLIBC__ (through features.h) on glibc

#if defined(__linux__) && defined(__GLIBC__)
#include <sys/syscall.h>
#include <unistd.h>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t value = 0;
  for (;;) {
    const long n = ::syscall(SYS_getrandom, &value, sizeof value, 0);
    if (n == (long)sizeof value) return value;
    if (n < 0 && errno != EINTR) __builtin_trap();  // no entropy source at all: nothing sane to return
  }
}
#endif
