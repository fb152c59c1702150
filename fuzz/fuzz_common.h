#pragma once
// Helpers for the libFuzzer targets (fuzz/targets.h): a temporary input file for parsers that
// read paths, and the rule that dl::Error is the only acceptable failure.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "tensor/error.h"

namespace dl::fuzz {

// Most parsers read paths: the input is written to a file that lives in memory (/dev/shm when it
// exists), one per process and suffix, rewritten for every input. `suffix` matters to loaders
// that look at the file name (".pth" sends load_weights to the PyTorch reader).
inline const std::string& write_input(const uint8_t* data, size_t size, const std::string& suffix) {
  static std::map<std::string, std::string> paths;  // suffix -> path, removed at exit
  auto it = paths.find(suffix);
  if (it == paths.end()) {
    std::error_code ec;
    const std::filesystem::path dir = std::filesystem::is_directory("/dev/shm", ec)
                                          ? std::filesystem::path("/dev/shm")
                                          : std::filesystem::temp_directory_path();
    if (paths.empty()) {
      std::atexit([] {
        for (const auto& [s, p] : paths) std::remove(p.c_str());
      });
      // A process that crashed (the point of fuzzing) left its files: remove those of dead pids.
      for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("dl_fuzz_", 0) != 0) continue;
        const std::string pid = name.substr(8, name.find('_', 8) - 8);
        if (!pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos &&
            !std::filesystem::exists("/proc/" + pid, ec))
          std::filesystem::remove(e.path(), ec);
      }
    }
    it = paths.emplace(suffix, (dir / ("dl_fuzz_" + std::to_string(::getpid()) + "_input" + suffix)).string()).first;
  }
  const std::string& path = it->second;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();  // the harness itself is broken; not a finding about the parser
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs fn; a dl::Error is the expected result of a bad input. Other exceptions propagate and
// end in std::terminate, which libFuzzer reports as a crash with the input saved.
template <typename Fn>
void expect_dl_errors_only(Fn&& fn) {
  try {
    fn();
  } catch (const dl::Error&) {
  }
}

}  // namespace dl::fuzz
