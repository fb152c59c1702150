#pragma once
// Helpers for the data pipeline's tests (tests/unit/data_*.cpp): a temporary folder removed at the
// end of the test, a watchdog for code that must not hang, and a way to expect a dl::Error whose
// message contains given words.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tensor/error.h"

namespace dl::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("dl_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Runs f on another thread; if it has not finished within `limit`, reports the hang and ends the
// process (a hung test must fail, not block the suite). Re-throws f's exception.
inline void within(std::chrono::milliseconds limit, const char* what, std::function<void()> f) {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  std::thread([f = std::move(f), done] {
    try {
      f();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  }).detach();
  if (fut.wait_for(limit) == std::future_status::timeout) {
    std::fprintf(stderr, "watchdog: '%s' did not finish within %lld ms: it hangs\n", what,
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::_Exit(3);
  }
  fut.get();
}

// The message of the dl::Error that f throws ("" and a failed check when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dl::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("expected a dl::Error, got another exception: " << e.what());
    return e.what();
  }
  FAIL_CHECK("expected a dl::Error, nothing was thrown");
  return "";
}

inline bool contains_all(const std::string& s, const std::vector<std::string>& words) {
  for (const auto& w : words)
    if (s.find(w) == std::string::npos) return false;
  return true;
}

// Whether `dir` holds the IDX file `name` (gzipped or not).
inline bool has_idx_file(const std::string& dir, const std::string& name) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(dir) / (name + ".gz"), ec) ||
         std::filesystem::exists(std::filesystem::path(dir) / name, ec);
}

}  // namespace dl::test

// DL_SKIP_WITHOUT_FASHION_MNIST(dir, "t10k-labels-idx1-ubyte"): skips the case (DL_SKIP, test_util.h)
// when the real data set's file is not installed in dir.
#define DL_SKIP_WITHOUT_FASHION_MNIST(dir, file)                                                   \
  do {                                                                                             \
    if (!::dl::test::has_idx_file((dir), (file)))                                                  \
      DL_SKIP("Fashion-MNIST is not in '" << (dir) << "' (apt-get install dataset-fashion-mnist)"); \
  } while (0)

// CHECK_ERROR(expr, {"word", ...}): expr throws a dl::Error whose message contains every word.
// With DL_TEST_VERBOSE set, the messages are printed (to read them).
#define CHECK_ERROR(expr, ...)                                                       \
  do {                                                                               \
    std::string dl_msg_ = ::dl::test::error_of([&] { (void)(expr); });               \
    INFO("message: " << dl_msg_);                                                    \
    if (std::getenv("DL_TEST_VERBOSE")) MESSAGE("dl::Error: " << dl_msg_);           \
    CHECK(::dl::test::contains_all(dl_msg_, __VA_ARGS__));                           \
  } while (0)
