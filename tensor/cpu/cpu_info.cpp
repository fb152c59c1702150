#include "tensor/cpu/cpu_info.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace dl::cpu {

namespace {
std::string read_line(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

// "32K", "1024K", "32M", "512" -> bytes; 0 when malformed.
int64_t parse_size(const std::string& s) {
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || v <= 0) return 0;
  const std::string unit(end);
  if (unit.empty()) return v;
  if (unit == "K") return v << 10;
  if (unit == "M") return v << 20;
  if (unit == "G") return v << 30;
  return 0;
}

// "0-1,4,6-7" -> 5; 1 when malformed.
int count_cpus(const std::string& list) {
  int n = 0;
  size_t i = 0;
  while (i < list.size()) {
    size_t comma = list.find(',', i);
    if (comma == std::string::npos) comma = list.size();
    const std::string part = list.substr(i, comma - i);
    const size_t dash = part.find('-');
    const int a = std::atoi(part.c_str()), b = dash == std::string::npos ? a : std::atoi(part.c_str() + dash + 1);
    if (b >= a && b - a < 1 << 16) n += b - a + 1;
    i = comma + 1;
  }
  return n > 0 ? n : 1;
}
}  // namespace

CacheInfo read_cache_info(const std::string& dir) {
  CacheInfo info;
  std::error_code ec;
  for (int i = 0; i < 16; ++i) {
    const std::filesystem::path d = std::filesystem::path(dir) / ("index" + std::to_string(i));
    if (!std::filesystem::is_directory(d, ec)) continue;
    const std::string type = read_line(d / "type");
    if (type != "Data" && type != "Unified") continue;
    CacheLevel c;
    c.bytes = parse_size(read_line(d / "size"));
    c.ways = std::atoi(read_line(d / "ways_of_associativity").c_str());
    c.sharing = count_cpus(read_line(d / "shared_cpu_list"));
    if (c.bytes <= 0) continue;
    const int level = std::atoi(read_line(d / "level").c_str());
    if (level == 1) info.l1d = c;
    if (level == 2) info.l2 = c;
    if (level == 3) info.l3 = c;
  }
  info.source = info.l1d.bytes > 0 || info.l2.bytes > 0 ? dir : "none";
  return info;
}

const CacheInfo& cpu_caches() {
  static const CacheInfo info = read_cache_info("/sys/devices/system/cpu/cpu0/cache");
  return info;
}

std::string CacheInfo::str() const {
  auto level = [](const char* name, const CacheLevel& c) {
    if (c.bytes <= 0) return fmt::format("{} unknown", name);
    std::string s = fmt::format("{} {} KiB", name, c.bytes >> 10);
    if (c.ways > 0) s += fmt::format(" {}-way", c.ways);
    if (c.sharing > 1) s += fmt::format(" shared by {}", c.sharing);
    return s;
  };
  return level("L1d", l1d) + ", " + level("L2", l2) + ", " + level("L3", l3) + " (" + source + ")";
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "";
}

bool cpu_has_avx512f() {
#if defined(__x86_64__)
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("bmi2");
  }();
  return yes;
#else
  return false;
#endif
}

bool cpu_has_avx2() {
#if defined(__x86_64__)
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
#else
  return false;
#endif
}

bool cpu_has_avx512bw() {
#if defined(__x86_64__)
  static const bool yes = [] {
    __builtin_cpu_init();
    return cpu_has_avx512f() && __builtin_cpu_supports("avx512bw");
  }();
  return yes;
#else
  return false;
#endif
}

}  // namespace dl::cpu
