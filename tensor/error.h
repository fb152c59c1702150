#pragma once
// Errors. A user can cause dl::Error (wrong shape, bad file, missing weight); its message names
// the thing and what was expected. DL_CHECK guards internal invariants and throws too, never aborts.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace dl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dl

// DL_CHECK(cond, "format {}", args...): throws dl::Error naming the file and line.
#define DL_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw ::dl::Error(fmt::format("{} ({}:{}: check `{}` failed)",                     \
                                    fmt::format(__VA_ARGS__), __FILE__, __LINE__, #cond)); \
  } while (0)
