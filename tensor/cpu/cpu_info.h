#pragma once
// Facts about the CPU that several places need: its model name (records, benchmark lines, the convolution
// algorithm cache's key), whether hand-written AVX-512 paths may run, and its cache sizes (the GEMM's blocks).
#include <cstdint>
#include <string>

namespace dl::cpu {

// One cache level as Linux describes it for CPU 0 (/sys/devices/system/cpu/cpu0/cache/index*): its size, its
// associativity and how many logical CPUs share it (shared_cpu_list). 0 where unknown.
struct CacheLevel {
  int64_t bytes = 0;
  int ways = 0;
  int sharing = 1;
  int64_t per_cpu() const { return sharing > 0 ? bytes / sharing : bytes; }
  // per_cpu(), or `fallback` where Linux gave no size: the one form the kernels size their blocks by
  int64_t per_cpu_or(int64_t fallback) const { return bytes > 0 ? per_cpu() : fallback; }
};
struct CacheInfo {
  CacheLevel l1d, l2, l3;
  std::string source;  // the directory read, or "none" when it gave nothing
  std::string str() const;  // "L1d 32 KiB 8-way, L2 1024 KiB 8-way, L3 32768 KiB shared by 2 (...)"
};
// Reads a directory laid out as /sys/devices/system/cpu/cpu0/cache (tests pass their own); levels it does not
// describe stay 0.
CacheInfo read_cache_info(const std::string& dir);
// This machine's, read once.
const CacheInfo& cpu_caches();

// The CPU's model name as /proc/cpuinfo gives it (e.g. "AMD EPYC"), or "" where there is none.
std::string cpu_model_name();

// Whether this CPU runs hand-written AVX-512F code: x86-64 with AVX-512F and BMI2 (every AVX-512 CPU has
// BMI2; the convolution's stride-2 packing uses pdep). False elsewhere.
bool cpu_has_avx512f();
// The same plus AVX-512BW (16-bit lanes: masked loads of bfloat16 values).
bool cpu_has_avx512bw();
// Whether it runs hand-written AVX2 + FMA code (x86-64 with both).
bool cpu_has_avx2();

}  // namespace dl::cpu
