// dl::cpu::gemm_bf16 (float32 and bfloat16 operands) for every kernel this machine can run (forced with
// DL_BF16_KERNEL; a kernel it cannot run is reported as a skipped case), against gemm_bf16_reference and against
// plain float32 sgemm; the float <-> bfloat16 conversions.
//
// Tolerances (per element of C; S = sum_k |a_k * b_k| over the bf16-rounded operands):
// - against gemm_bf16_reference: both round the operands identically and every product of two bfloat16 values is
//   exact in float32, so the only difference is float32 versus double summation. Recursive summation of K terms
//   errs by at most K * u * S (u = 2^-24), whatever the order or grouping (tdpbf16ps / vdpbf16ps add pairs); the
//   final alpha * sum + beta * C adds a few ulps: tol = 2 * (K + 4) * u * (|alpha| S + |beta C|) (a factor 2 slack).
// - against sgemm on the unrounded float32 operands: each operand moves by at most 2^-9 relative (bf16 keeps 8
//   significant bits, round to nearest), so each product by at most about 2 * 2^-9 = 2^-8:
//   tol = 2 * 2^-8 * |alpha| * sum_k |a_k| |b_k| (plus the float32 summation term above for both).
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_bf16.h"
#include "test_util.h"

namespace {

using dl::cpu::bf16_to_float;
using dl::cpu::float_to_bf16;

// Forces a kernel for the scope (null: none forced).
struct ForceKernel : dl::test::ScopedEnv {
  explicit ForceKernel(const char* name) : ScopedEnv("DL_BF16_KERNEL", name) {}
};

using Threads = dl::test::ScopedThreads;

float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }
uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }
float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

constexpr float kPad = -777.0f;

// A row-major rows x cols matrix with row stride ld = cols + pad; the padding holds kPad.
struct Mat {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> v;
  Mat(int64_t r, int64_t c, int64_t pad, std::mt19937& rng) : rows(r), cols(c), ld(c + pad) {
    v.assign(static_cast<size_t>(std::max<int64_t>(1, r * ld)), kPad);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) v[static_cast<size_t>(i * ld + j)] = u(rng);
  }
  float& at(int64_t i, int64_t j) { return v[static_cast<size_t>(i * ld + j)]; }
  float at(int64_t i, int64_t j) const { return v[static_cast<size_t>(i * ld + j)]; }
  std::vector<uint16_t> bf16() const {
    std::vector<uint16_t> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = float_to_bf16(v[i]);
    return out;
  }
};

struct Case {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  int64_t pad = 0;
  bool bf16_in = false;  // operands passed as bfloat16 bits

  std::string str() const {
    std::ostringstream s;
    s << "ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N << " K=" << K << " alpha=" << alpha
      << " beta=" << beta << " pad=" << pad << " bf16_in=" << bf16_in;
    return s.str();
  }
};

// Runs one case with the kernel currently forced; returns "" or what went wrong (first bad element).
std::string run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t ar = c.ta ? c.K : c.M, ac = c.ta ? c.M : c.K, br = c.tb ? c.N : c.K, bc = c.tb ? c.K : c.N;
  const Mat A(ar, ac, c.pad, rng), B(br, bc, c.pad, rng);
  Mat C(c.M, c.N, c.pad, rng), R = C, S = C;
  const Mat C0 = C;
  if (c.beta == 0.0f)  // beta == 0: C must not be read
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C.at(i, j) = std::numeric_limits<float>::quiet_NaN();
  if (c.bf16_in) {
    const std::vector<uint16_t> a = A.bf16(), b = B.bf16();
    dl::cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, c.alpha, a.data(), A.ld, b.data(), B.ld, c.beta, C.v.data(), C.ld);
  } else {
    dl::cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.v.data(), A.ld, B.v.data(), B.ld, c.beta, C.v.data(),
                       C.ld);
  }
  dl::cpu::gemm_bf16_reference(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.v.data(), A.ld, B.v.data(), B.ld, c.beta,
                               R.v.data(), R.ld);
  dl::cpu::sgemm_reference(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.v.data(), A.ld, B.v.data(), B.ld, c.beta,
                           S.v.data(), S.ld);
  constexpr double u = 1.0 / (1 << 24);
  const double alpha = std::fabs(c.alpha);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double sr = 0.0, sf = 0.0;  // sum |a b| over rounded operands; over float32 operands
      for (int64_t k = 0; k < c.K; ++k) {
        const float a = c.ta ? A.at(k, i) : A.at(i, k), b = c.tb ? B.at(j, k) : B.at(k, j);
        sr += std::fabs(static_cast<double>(round_bf16(a)) * round_bf16(b));
        sf += std::fabs(static_cast<double>(a) * b);
      }
      const double cold = c.beta == 0.0f ? 0.0 : std::fabs(static_cast<double>(c.beta) * C0.at(i, j));
      const double got = C.at(i, j);
      const double tol_ref = 2.0 * (c.K + 4) * u * (alpha * sr + cold) + 1e-30;
      const double tol_f32 = 2.0 / 256.0 * alpha * sf + tol_ref;
      const double e_ref = std::fabs(got - R.at(i, j)), e_f32 = std::fabs(got - S.at(i, j));
      if (!(e_ref <= tol_ref) || !(e_f32 <= tol_f32)) {
        std::ostringstream s;
        s << c.str() << " at (" << i << "," << j << "): got " << got << " reference " << R.at(i, j) << " (err "
          << e_ref << ", tol " << tol_ref << ") sgemm " << S.at(i, j) << " (err " << e_f32 << ", tol " << tol_f32
          << ")";
        return s.str();
      }
    }
  // C's row padding untouched.
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < C.ld; ++j)
      if (C.at(i, j) != kPad) return c.str() + ": C's row padding was written";
  return "";
}

// Every shape / transpose / alpha / beta / stride combination below, for the named kernel.
void check_kernel(const char* name) {
  ForceKernel force(name);
  REQUIRE(std::string(dl::cpu::gemm_bf16_kernel_name()) == name);
  const int64_t shapes[][3] = {
      {1, 1, 1},    {3, 5, 7},     {16, 16, 32},  {32, 32, 32},   {33, 31, 33},  {17, 47, 1},   {64, 64, 64},
      {15, 33, 65}, {100, 3, 40},  {2, 100, 300}, {70, 90, 31},   {31, 77, 95},  {48, 200, 97}, {129, 65, 257},
      {14, 32, 2},  {13, 31, 3},   {1, 300, 64},  {300, 1, 64},   {45, 45, 600}, {37, 70, 1100}};
  uint32_t seed = 1;
  for (int threads : {1, 2}) {
    Threads t(threads);
    for (int tr = 0; tr < 4; ++tr)
      for (const auto& s : shapes) {
        Case c;
        c.ta = (tr & 1) != 0, c.tb = (tr & 2) != 0;
        c.M = s[0], c.N = s[1], c.K = s[2];
        const int v = static_cast<int>(seed % 4);
        c.alpha = v == 3 ? -0.5f : 1.0f;
        c.beta = v == 0 ? 0.0f : v == 1 ? 1.0f : v == 2 ? 0.0f : 2.0f;
        c.pad = seed % 3;
        c.bf16_in = seed % 5 == 0;
        const std::string err = run_case(c, seed++);
        CHECK_MESSAGE(err.empty(), "kernel=" << name << " threads=" << threads << " " << err);
      }
  }
  // Long K (more than one K block), larger blocks (more than one M / N block), both operand types.
  const int64_t big[][3] = {{64, 96, 4608}, {200, 130, 700}, {40, 1100, 200}, {1100, 40, 130}};
  for (int threads : {1, 2}) {
    Threads t(threads);
    for (const auto& s : big)
      for (int tr = 0; tr < 4; ++tr) {
        Case c;
        c.ta = (tr & 1) != 0, c.tb = (tr & 2) != 0;
        c.M = s[0], c.N = s[1], c.K = s[2];
        c.beta = tr == 2 ? 0.5f : 0.0f;
        c.pad = tr;
        c.bf16_in = tr == 3;
        const std::string err = run_case(c, seed++);
        CHECK_MESSAGE(err.empty(), "kernel=" << name << " threads=" << threads << " " << err);
      }
  }
  // K = 4608 makes the packed blocks of all of K short: more than one block of M (MC) and of N (NC).
  {
    Threads t(1);
    Case c;
    c.ta = c.tb = true;
    c.M = 100, c.N = 470, c.K = 4608;
    c.alpha = 0.75f, c.beta = -1.0f;
    c.pad = 3;
    const std::string err = run_case(c, seed++);
    CHECK_MESSAGE(err.empty(), "kernel=" << name << " " << err);
  }
  // 0-sized dims: M = 0 or N = 0 does nothing; K = 0 or alpha = 0 scales C by beta (beta = 0: C := 0, not read).
  {
    std::vector<float> C(12, 3.0f), A(12, 1.0f), B(12, 1.0f);
    dl::cpu::gemm_bf16(false, false, 0, 3, 4, 1.0f, A.data(), 4, B.data(), 3, 0.0f, C.data(), 3);
    dl::cpu::gemm_bf16(false, false, 3, 0, 4, 1.0f, A.data(), 4, B.data(), 1, 0.0f, C.data(), 3);
    CHECK(std::all_of(C.begin(), C.end(), [](float x) { return x == 3.0f; }));
    dl::cpu::gemm_bf16(false, false, 3, 4, 0, 1.0f, A.data(), 1, B.data(), 4, 0.5f, C.data(), 4);
    CHECK(std::all_of(C.begin(), C.end(), [](float x) { return x == 1.5f; }));
    std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
    dl::cpu::gemm_bf16(false, false, 3, 4, 2, 0.0f, A.data(), 2, B.data(), 4, 0.0f, C.data(), 4);
    CHECK(std::all_of(C.begin(), C.end(), [](float x) { return x == 0.0f; }));
  }
  // Inside an OpenMP parallel region (as the convolutions call it): one single-threaded GEMM per thread.
  {
    Threads t(2);
    std::vector<std::string> errs(4);
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int q = 0; q < 4; ++q) {
      Case c;
      c.ta = q == 1, c.tb = q == 2;
      c.M = 70 + q, c.N = 90, c.K = 300 + q;
      c.beta = q == 3 ? 1.0f : 0.0f;
      c.pad = 1;
      errs[static_cast<size_t>(q)] = run_case(c, 100 + static_cast<uint32_t>(q));
    }
    for (const std::string& e : errs) CHECK_MESSAGE(e.empty(), "kernel=" << name << " in parallel region: " << e);
  }
}

void check_or_skip(const char* name) {
  if (!dl::cpu::gemm_bf16_kernel_available(name)) DL_SKIP("bf16 kernel " << name << " not available on this machine");
  check_kernel(name);
}

}  // namespace

TEST_CASE("float_to_bf16: round to nearest even, NaN, inf, denormals, overflow, and bf16_to_float is exact") {
  CHECK(float_to_bf16(1.0f) == 0x3F80);
  CHECK(float_to_bf16(-2.0f) == 0xC000);
  CHECK(float_to_bf16(0.0f) == 0x0000);
  CHECK(float_to_bf16(-0.0f) == 0x8000);
  // Ties go to the even neighbour; anything past the tie rounds away.
  CHECK(float_to_bf16(from_bits(0x3F808000)) == 0x3F80);
  CHECK(float_to_bf16(from_bits(0x3F818000)) == 0x3F82);
  CHECK(float_to_bf16(from_bits(0x3F808001)) == 0x3F81);
  CHECK(float_to_bf16(from_bits(0x3F807FFF)) == 0x3F80);
  CHECK(float_to_bf16(from_bits(0xBF818000)) == 0xBF82);
  // Infinities stay, the largest floats overflow to infinity, the largest bf16 stays.
  CHECK(float_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xFF80);
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);
  CHECK(float_to_bf16(-std::numeric_limits<float>::max()) == 0xFF80);
  CHECK(float_to_bf16(from_bits(0x7F7F0000)) == 0x7F7F);
  CHECK(float_to_bf16(from_bits(0x7F7F7FFF)) == 0x7F7F);
  // NaN stays NaN (quiet), even when its payload lives only in the low 16 bits.
  for (uint32_t nan : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FA12345u}) {
    const uint16_t b = float_to_bf16(from_bits(nan));
    CHECK(std::isnan(bf16_to_float(b)));
    CHECK((b & 0x0040) != 0);
    CHECK((b & 0x8000) == ((nan >> 16) & 0x8000));
  }
  // Denormals round like everything else (kept, not flushed); the largest rounds up to the smallest normal.
  CHECK(float_to_bf16(from_bits(0x00000001)) == 0x0000);
  CHECK(float_to_bf16(from_bits(0x00018000)) == 0x0002);
  CHECK(float_to_bf16(from_bits(0x00010000)) == 0x0001);
  CHECK(float_to_bf16(from_bits(0x007FFFFF)) == 0x0080);
  CHECK(float_to_bf16(from_bits(0x807FFFFF)) == 0x8080);
  // Back: exact, the low 16 bits zero.
  for (uint32_t b = 0; b < 0x10000; b += 7)
    if (!std::isnan(bf16_to_float(static_cast<uint16_t>(b)))) {
      CHECK(bits(bf16_to_float(static_cast<uint16_t>(b))) == b << 16);
      CHECK(float_to_bf16(bf16_to_float(static_cast<uint16_t>(b))) == b);
    }
}

TEST_CASE("float_to_bf16 / bf16_to_float on arrays match the scalar functions bit for bit") {
  std::mt19937 rng(5);
  std::vector<float> src;
  for (uint32_t u : {0x3F808000u, 0x3F818000u, 0x7F7FFFFFu, 0x7F800001u, 0x7FA12345u, 0xFF800000u, 0x00000001u,
                     0x007FFFFFu, 0x807FFFFFu, 0x00018000u, 0x80000000u})
    src.push_back(from_bits(u));
  for (int i = 0; i < 1000; ++i) src.push_back(from_bits(static_cast<uint32_t>(rng())));
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(5), int64_t(16), int64_t(31), int64_t(32), int64_t(33),
                    static_cast<int64_t>(src.size())}) {
    for (int64_t off : {int64_t(0), int64_t(11), int64_t(40)}) {
      if (off + n > static_cast<int64_t>(src.size())) continue;
      std::vector<uint16_t> got(static_cast<size_t>(n) + 1, 0xABCD);
      dl::cpu::float_to_bf16(src.data() + off, got.data(), n);
      for (int64_t i = 0; i < n; ++i) REQUIRE(got[static_cast<size_t>(i)] == float_to_bf16(src[static_cast<size_t>(off + i)]));
      CHECK(got[static_cast<size_t>(n)] == 0xABCD);
      std::vector<float> back(static_cast<size_t>(n) + 1, 5.0f);
      dl::cpu::bf16_to_float(got.data(), back.data(), n);
      for (int64_t i = 0; i < n; ++i)
        REQUIRE(bits(back[static_cast<size_t>(i)]) == static_cast<uint32_t>(got[static_cast<size_t>(i)]) << 16);
      CHECK(back[static_cast<size_t>(n)] == 5.0f);
    }
  }
}

TEST_CASE("gemm_bf16_kernel_name reports an available kernel, and DL_BF16_KERNEL never forces a missing one") {
  CHECK(dl::cpu::gemm_bf16_kernel_available("portable"));
  CHECK_FALSE(dl::cpu::gemm_bf16_kernel_available("avx512"));
  CHECK(dl::cpu::gemm_bf16_kernel_available(dl::cpu::gemm_bf16_kernel_name()));
  for (const char* k : {"amx", "avx512_bf16", "portable", "bogus"}) {
    ForceKernel f(k);
    const std::string got = dl::cpu::gemm_bf16_kernel_name();
    CHECK(dl::cpu::gemm_bf16_kernel_available(got.c_str()));
    if (dl::cpu::gemm_bf16_kernel_available(k)) CHECK(got == k);
  }
  // The best kernel is chosen by default.
  const char* best = dl::cpu::gemm_bf16_kernel_available("amx")           ? "amx"
                     : dl::cpu::gemm_bf16_kernel_available("avx512_bf16") ? "avx512_bf16"
                                                                          : "portable";
  unsetenv("DL_BF16_KERNEL");
  CHECK(std::string(dl::cpu::gemm_bf16_kernel_name()) == best);
}

TEST_CASE("gemm_bf16 matches the reference: kernel amx") { check_or_skip("amx"); }
TEST_CASE("gemm_bf16 matches the reference: kernel avx512_bf16") { check_or_skip("avx512_bf16"); }
TEST_CASE("gemm_bf16 matches the reference: kernel portable") { check_or_skip("portable"); }

TEST_CASE("gemm_bf16_reference rounds the operands: exact on bf16-representable data, differs from float32") {
  // 1 + 2^-9 rounds to 1 (tie to even); (1 + 2^-9) * (1 + 2^-9) over K = 1 gives exactly 1.
  const float a = 1.0f + 1.0f / 512.0f;
  float c = 0.0f;
  dl::cpu::gemm_bf16_reference(false, false, 1, 1, 1, 1.0f, &a, 1, &a, 1, 0.0f, &c, 1);
  CHECK(c == 1.0f);
  for (const char* k : {"amx", "avx512_bf16", "portable"}) {
    if (!dl::cpu::gemm_bf16_kernel_available(k)) continue;
    ForceKernel f(k);
    float g = 0.0f;
    dl::cpu::gemm_bf16(false, false, 1, 1, 1, 1.0f, &a, 1, &a, 1, 0.0f, &g, 1);
    CHECK_MESSAGE(g == 1.0f, k);
  }
}

TEST_CASE("measure_bf16_peak_gflops: positive for the available fast kernels, 0 for portable and missing ones") {
  CHECK(dl::cpu::measure_bf16_peak_gflops("portable", 1, 0.01) == 0.0);
  CHECK(dl::cpu::measure_bf16_peak_gflops("bogus", 1, 0.01) == 0.0);
  for (const char* k : {"amx", "avx512_bf16"}) {
    const double g = dl::cpu::measure_bf16_peak_gflops(k, 2, 0.01);
    if (dl::cpu::gemm_bf16_kernel_available(k))
      CHECK_MESSAGE(g > 0.0, k);
    else
      CHECK_MESSAGE(g == 0.0, k);
  }
}

// gemm_bf16_rows: B's rows are pointers into one buffer at scattered, overlapping offsets (as the
// convolution's implicit im2col makes them); the result must equal gemm_bf16 on the gathered dense copy bit for
// bit (the same packed values meet the same kernel), on every kernel the machine has, 1 and 2 threads.
TEST_CASE("gemm_bf16_rows equals gemm_bf16 on the gathered matrix, every kernel") {
  for (const char* name : {"amx", "avx512_bf16", "portable"}) {
    if (!dl::cpu::gemm_bf16_kernel_available(name)) {
      MESSAGE("bf16 kernel " << name << " not available: its row-pointer case not run");
      continue;
    }
    ForceKernel force(name);
    for (int threads : {1, 2}) {
      Threads t(threads);
      struct Shape3 {
        int64_t M, N, K;
      };
      for (Shape3 s : {Shape3{64, 300, 576}, Shape3{33, 47, 95}, Shape3{128, 1000, 1152}, Shape3{5, 3, 1}}) {
        std::mt19937 rng(static_cast<uint32_t>(s.M * 7 + s.K));
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        std::vector<uint16_t> pool(static_cast<size_t>(s.N + 4 * s.K + 64)), a(static_cast<size_t>(s.M * s.K));
        for (auto& v : pool) v = float_to_bf16(u(rng));
        for (auto& v : a) v = float_to_bf16(u(rng));
        std::vector<const uint16_t*> rows(static_cast<size_t>(s.K));
        std::vector<uint16_t> dense(static_cast<size_t>(s.K * s.N));
        for (int64_t k = 0; k < s.K; ++k) {
          rows[static_cast<size_t>(k)] = pool.data() + (k * 37) % (3 * s.K + 61);  // overlapping, unaligned
          std::memcpy(dense.data() + k * s.N, rows[static_cast<size_t>(k)], sizeof(uint16_t) * s.N);
        }
        std::vector<float> c1(static_cast<size_t>(s.M * s.N), 0.5f), c2 = c1;
        dl::cpu::gemm_bf16_rows(false, s.M, s.N, s.K, 1.0f, a.data(), s.K, rows.data(), 1.0f, c1.data(), s.N);
        dl::cpu::gemm_bf16(false, false, s.M, s.N, s.K, 1.0f, a.data(), s.K, dense.data(), s.N, 1.0f, c2.data(), s.N);
        INFO("kernel " << name << ", threads " << threads << ", M N K " << s.M << " " << s.N << " " << s.K);
        CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0);
      }
    }
  }
}
