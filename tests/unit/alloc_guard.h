#pragma once
// Allocation guard for the hostile-input suites (hostile_inputs_test.cpp, fuzz_regressions_test.cpp).
// Include it in exactly one source file of a test executable: it replaces the global operator
// new/delete for that executable. A request above kHugeAllocation is refused with std::bad_alloc
// and counted, so a parser that trusts a size from a file header is caught even where the
// allocation would have succeeded lazily. Decoders that allocate with malloc (zlib, stb_image)
// are judged by the peak RSS instead, which may grow by at most kMaxRssGrowthKb per input.
#include <sys/resource.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <new>
#include <string>

#include "tensor/error.h"

namespace dl::test {

constexpr size_t kHugeAllocation = size_t{512} << 20;
constexpr long kMaxRssGrowthKb = 200L * 1024;

inline std::atomic<size_t> g_huge_requests{0};
inline std::atomic<size_t> g_largest_huge{0};

inline void* guarded_alloc(size_t n, size_t align) {
  if (n > kHugeAllocation) {
    g_huge_requests.fetch_add(1);
    size_t prev = g_largest_huge.load();
    while (n > prev && !g_largest_huge.compare_exchange_weak(prev, n)) {
    }
    throw std::bad_alloc();
  }
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  if (!p) throw std::bad_alloc();
  return p;
}

// Peak resident set size (VmHWM), in kB.
inline long peak_rss_kb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// Resets the peak to the current RSS (Linux >= 4.0), so that what one input makes the process
// allocate is judged on its own, whatever ran before. False when the kernel does not allow it.
inline bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

// What a loader did with one hostile input, and what it allocated on the way.
struct Outcome {
  bool dl_error = false;
  bool other_exception = false;
  std::string message = "<no exception>";
  size_t huge_requests = 0;  // operator new requests above kHugeAllocation
  size_t largest_huge = 0;
  long rss_growth_kb = 0;  // growth of the peak RSS while it ran
};

inline Outcome run_guarded(const std::function<void()>& f) {
  Outcome o;
  const size_t huge_before = g_huge_requests.load();
  g_largest_huge = 0;
  reset_peak_rss();
  const long rss_before = peak_rss_kb();
  try {
    f();
  } catch (const dl::Error& e) {
    o.dl_error = true;
    o.message = e.what();
  } catch (const std::exception& e) {
    o.other_exception = true;
    o.message = std::string("<non-dl::Error exception> ") + e.what();
  }
  o.huge_requests = g_huge_requests.load() - huge_before;
  o.largest_huge = g_largest_huge.load();
  o.rss_growth_kb = peak_rss_kb() - rss_before;
  return o;
}

}  // namespace dl::test

void* operator new(size_t n) { return dl::test::guarded_alloc(n, 0); }
void* operator new[](size_t n) { return dl::test::guarded_alloc(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return dl::test::guarded_alloc(n, static_cast<size_t>(a)); }
void* operator new[](size_t n, std::align_val_t a) { return dl::test::guarded_alloc(n, static_cast<size_t>(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
