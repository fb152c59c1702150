// The per-shape convolution algorithm choices (conv.h): the process's table, and the cache file that
// carries them to later processes on the same CPU. conv.cpp measures; this file only remembers.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "tensor/cpu/conv.h"
#include "tensor/cpu/conv_algo_cache.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm.h"

namespace dl::cpu {

namespace {

constexpr const char* kVersion = "dl-conv-algos-v1";
constexpr size_t kMaxFileBytes = size_t{16} << 20;  // a larger file is not read (not ours, or runaway)

struct Table {
  std::mutex mu;
  bool loaded = false;
  bool write_failed = false;
  std::map<std::string, std::string> choices;  // this process's and the file's (this CPU's lines)
  std::set<std::string> used;                   // the keys this process looked up or decided
};

Table& table() {
  static Table t;
  return t;
}

// "AMD EPYC 9R14 / avx512": the CPU model (from /proc/cpuinfo) and the GEMM kernel; timings from one
// never decide for another.
const std::string& machine_tag() {
  static const std::string tag = [] {
    std::string model = cpu_model_name();
    if (model.empty()) model = "unknown CPU";
    for (char& c : model)
      if (c == '\t' || c == '\n') c = ' ';
    return model + "\t" + sgemm_kernel_name();
  }();
  return tag;
}

// Reads the file's lines for this machine into t.choices (under t.mu). Never throws: a file that cannot be
// read is no cache; malformed lines are skipped with one warning.
void load(Table& t) {
  t.loaded = true;
  const std::string path = conv_algo_cache_path();
  if (path.empty()) return;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return;  // no file yet
  if (size > kMaxFileBytes) {
    std::fprintf(stderr, "conv: warning: %s is larger than %zu MiB; not read (delete it to start anew)\n",
                 path.c_str(), kMaxFileBytes >> 20);
    return;
  }
  std::ifstream in(path);
  const std::string prefix = std::string(kVersion) + "\t" + machine_tag() + "\t";
  size_t bad = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line.rfind(kVersion, 0) != 0 || std::count(line.begin(), line.end(), '\t') != 4) {
      ++bad;
      continue;
    }
    if (line.rfind(prefix, 0) != 0) continue;  // another CPU's
    const std::string rest = line.substr(prefix.size());
    const size_t tab = rest.find('\t');
    if (tab == 0 || tab + 1 >= rest.size()) {
      ++bad;
      continue;
    }
    t.choices[rest.substr(0, tab)] = rest.substr(tab + 1);  // a later line wins
  }
  if (bad > 0)
    std::fprintf(stderr, "conv: warning: ignored %zu malformed line(s) in %s\n", bad, path.c_str());
}

// One line appended with a single write(2) on an O_APPEND descriptor, so processes writing at once do not
// interleave within a line. A failure is reported once and the process stops writing.
void append(Table& t, const std::string& key, const std::string& algo) {
  const std::string path = conv_algo_cache_path();
  if (path.empty() || t.write_failed) return;
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  const std::string line = std::string(kVersion) + "\t" + machine_tag() + "\t" + key + "\t" + algo + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  if (fd >= 0) ok = ::close(fd) == 0 && ok;
  if (!ok) {
    t.write_failed = true;
    std::fprintf(stderr, "conv: warning: cannot write the algorithm cache %s; choices are kept for this process only\n",
                 path.c_str());
  }
}

}  // namespace

bool conv_algo_search_enabled() {
  const char* v = std::getenv("DL_CONV_ALGO");
  return v == nullptr || std::string(v) != "heuristic";
}

std::string conv_algo_cache_path() {
  if (const char* v = std::getenv("DL_CONV_ALGO_CACHE")) return v;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/dl/conv_algos.tsv";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/dl/conv_algos.tsv";
  return "";
}

std::vector<std::pair<std::string, std::string>> conv_algo_choices() {
  Table& t = table();
  std::lock_guard lock(t.mu);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, a] : t.choices)
    if (t.used.count(k)) out.emplace_back(k, a);
  return out;
}

void conv_algo_reset() {
  Table& t = table();
  std::lock_guard lock(t.mu);
  t.choices.clear();
  t.used.clear();
  t.loaded = false;
  t.write_failed = false;
}

std::optional<std::string> conv_algo_lookup(const std::string& key) {
  Table& t = table();
  std::lock_guard lock(t.mu);
  if (!t.loaded) load(t);
  const auto it = t.choices.find(key);
  if (it == t.choices.end()) return std::nullopt;
  t.used.insert(key);
  return it->second;
}

void conv_algo_store(const std::string& key, const std::string& algo) {
  Table& t = table();
  std::lock_guard lock(t.mu);
  if (!t.loaded) load(t);
  const bool fresh = t.choices.find(key) == t.choices.end() || t.choices[key] != algo;
  t.choices[key] = algo;
  t.used.insert(key);
  if (fresh) append(t, key, algo);
}

}  // namespace dl::cpu
