#pragma once
// Facts about the CPU that several places need: its model name (records, benchmark lines, the convolution
// algorithm cache's key) and whether hand-written AVX-512 paths may run.
#include <string>

namespace dl::cpu {

// The CPU's model name as /proc/cpuinfo gives it (e.g. "AMD EPYC"), or "" where there is none.
std::string cpu_model_name();

// Whether this CPU runs hand-written AVX-512F code: x86-64 with AVX-512F and BMI2 (every AVX-512 CPU has
// BMI2; the convolution's stride-2 packing uses pdep). False elsewhere.
bool cpu_has_avx512f();

}  // namespace dl::cpu
