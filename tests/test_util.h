#pragma once
// Helpers shared by the test suites: fixture lookup, tolerance checks that report the worst
// element, and a CHECK that wraps gradcheck with its message.
#include <doctest/doctest.h>

#include <initializer_list>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "tensor/tensor.h"

namespace dl::test {

// Skipping. A case that cannot run on this machine calls DL_SKIP("why") and returns; the test
// process then exits with kSkipReturnCode (ctest's SKIP_RETURN_CODE), so ctest reports it as
// skipped, with the reason in its output, never as passed.
inline constexpr int kSkipReturnCode = 77;
void mark_skipped(const std::string& reason);
int skipped_count();

// The source tree and the folder of built programs (env DL_SOURCE_DIR / DL_BIN_DIR override).
std::string source_dir();
std::string bin_dir();
// Directory written by tests/fixtures/run_all.sh (env DL_FIXTURES_DIR); empty when unset.
std::string fixtures_dir();
// A fixture tensor saved by tests/fixtures/*.py (our .dlt format: see fixture_io in test_util.cpp).
// Returns nullopt when missing, so a test can say which fixture is absent.
std::optional<Tensor> load_fixture(const std::string& group, const std::string& name);
Tensor fixture(const std::string& group, const std::string& name);  // fails the test when missing

// Starts args[0] with args[1..] (no shell), its stdout and stderr together into the file `log`
// (appended to, or truncated first); returns its pid. wait_program: its exit code, 128 + signal
// when killed.
int spawn_program(const std::vector<std::string>& args, const std::string& log, bool append = false);
int wait_program(int pid);
// Both at once, and what it printed.
struct ProgramResult {
  int code;
  std::string output;
};
ProgramResult run_program(const std::vector<std::string>& args, const std::string& log);

// A seeded uniform [lo, hi) float64 tensor: a leaf that requires grad (a gradcheck input), or not.
Tensor random_input(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0, bool requires_grad = true);

// |a - b| <= atol + rtol * |b| elementwise; on failure the message names the worst element.
struct Close {
  bool ok;
  std::string message;
};
Close close(const Tensor& actual, const Tensor& expected, double rtol, double atol);

// An environment variable set (value non-null) or unset (null) for the scope; what was there is
// restored at its end. Kernel switches (DL_GEMM_KERNEL, DL_BF16_KERNEL) are read on every call.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, prev_;
  bool had_ = false;
};

// omp_set_num_threads(n) for the scope.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int prev_;
};

// Runs fn, which must throw a dl::Error whose message contains every one of `parts`.
template <typename Fn>
inline void check_throws_with(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    FAIL("no error thrown");
  } catch (const dl::Error& e) {
    std::string msg = e.what();
    INFO("message: ", msg);
    for (const auto& p : parts) {
      INFO("expected to contain: ", p);
      CHECK(msg.find(p) != std::string::npos);
    }
  }
}

}  // namespace dl::test

// DL_SKIP(reason): ends the current case as skipped (see kSkipReturnCode); reason is streamed.
#define DL_SKIP(reason)                                   \
  do {                                                    \
    std::ostringstream dl_skip_os_;                       \
    dl_skip_os_ << reason;                                \
    ::dl::test::mark_skipped(dl_skip_os_.str());          \
    return;                                               \
  } while (0)

// CHECK_CLOSE(actual, expected, rtol, atol)
#define CHECK_CLOSE(a, b, rtol, atol)                         \
  do {                                                        \
    auto dl_close_ = ::dl::test::close((a), (b), (rtol), (atol)); \
    INFO(dl_close_.message);                                  \
    CHECK(dl_close_.ok);                                      \
  } while (0)

// CHECK_GRADCHECK(fn, inputs [, options]) (variadic: braces in the arguments hold commas)
#define CHECK_GRADCHECK(...)                                              \
  do {                                                                    \
    auto dl_gc_ = ::dl::gradcheck(__VA_ARGS__);                           \
    INFO(dl_gc_.message);                                                 \
    CHECK(dl_gc_.ok);                                                     \
  } while (0)
