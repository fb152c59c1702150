// The per-family backend switch (hand-written or library kernels) and the TF32 switch. Host-only,
// built with and without CUDA, so its parsing is testable anywhere.
#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda/cuda.h"
#include "tensor/error.h"

namespace dl::cuda {
namespace {

struct Switches {
  std::array<std::atomic<int>, kNumOpFamilies> backend{};
  std::atomic<bool> tf32{false};
};

constexpr std::array<const char*, kNumOpFamilies> kFamilyNames{"gemm", "conv", "batchnorm"};

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

// Parses "family:backend,..." into `out` (all or nothing).
void parse(const std::string& spec, std::array<int, kNumOpFamilies>& out) {
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string item = trim(spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    pos = comma == std::string::npos ? spec.size() + 1 : comma + 1;
    if (item.empty()) continue;
    size_t colon = item.find(':');
    if (colon == std::string::npos)
      fail("CUDA backend spec '{}': item '{}' is not family:backend (e.g. gemm:handwritten)", spec, item);
    std::string fam = lower(trim(item.substr(0, colon))), be = lower(trim(item.substr(colon + 1)));
    int b;
    if (be == "library" || be == "lib") {
      b = static_cast<int>(Backend::Library);
    } else if (be == "handwritten" || be == "hand") {
      b = static_cast<int>(Backend::Handwritten);
    } else {
      fail("CUDA backend spec '{}': unknown backend '{}' (expected library or handwritten)", spec, be);
    }
    if (fam == "all" || fam == "*") {
      out.fill(b);
      continue;
    }
    if (fam == "bn" || fam == "batch_norm") fam = "batchnorm";
    if (fam == "matmul" || fam == "bmm") fam = "gemm";
    bool found = false;
    for (int i = 0; i < kNumOpFamilies; ++i) {
      if (fam == kFamilyNames[i]) {
        out[i] = b;
        found = true;
      }
    }
    if (!found) fail("CUDA backend spec '{}': unknown op family '{}' (expected gemm, conv, batchnorm or all)", spec, fam);
  }
}

Switches& switches() {
  static Switches* s = [] {
    auto* sw = new Switches;  // never destroyed: kernels may ask during static destruction
    std::array<int, kNumOpFamilies> init{};
    init.fill(static_cast<int>(Backend::Library));
    if (const char* env = std::getenv("DL_CUDA_BACKEND")) {
      try {
        parse(env, init);
      } catch (const Error& e) {
        throw Error(std::string("environment variable DL_CUDA_BACKEND: ") + e.what());
      }
    }
    for (int i = 0; i < kNumOpFamilies; ++i) sw->backend[i] = init[i];
    if (const char* env = std::getenv("DL_CUDA_TF32")) sw->tf32 = std::string(env) == "1" || lower(env) == "true";
    return sw;
  }();
  return *s;
}

}  // namespace

void set_backend(OpFamily family, Backend backend) {
  switches().backend[static_cast<int>(family)] = static_cast<int>(backend);
}

Backend get_backend(OpFamily family) { return static_cast<Backend>(switches().backend[static_cast<int>(family)].load()); }

void set_backends(const std::string& spec) {
  std::array<int, kNumOpFamilies> cur{};
  for (int i = 0; i < kNumOpFamilies; ++i) cur[i] = switches().backend[i];
  parse(spec, cur);
  for (int i = 0; i < kNumOpFamilies; ++i) switches().backend[i] = cur[i];
}

std::string backends_str() {
  std::string s;
  for (int i = 0; i < kNumOpFamilies; ++i) {
    if (i) s += ",";
    s += kFamilyNames[i];
    s += ":";
    s += to_string(get_backend(static_cast<OpFamily>(i)));
  }
  return s;
}

const char* to_string(OpFamily family) { return kFamilyNames[static_cast<int>(family)]; }
const char* to_string(Backend backend) { return backend == Backend::Library ? "library" : "handwritten"; }

void set_allow_tf32(bool on) { switches().tf32 = on; }
bool allow_tf32() { return switches().tf32; }

bool has_cudnn() {
#ifdef DL_WITH_CUDNN
  return true;
#else
  return false;
#endif
}

}  // namespace dl::cuda
