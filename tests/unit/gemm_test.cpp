// dl::cpu::sgemm / dgemm against references: every transpose combination, alpha/beta values (beta = 0 with a
// NaN-filled C), odd shapes (1 .. 257, K = 0), padded strides, each micro-kernel this CPU supports (forced with
// DL_GEMM_KERNEL), 1 and 2 threads and calls from inside a parallel region; the cache blocks derived from the
// cache sizes, and correctness under other blocks (DL_GEMM_BLOCKS); the products with a B packed once
// (gemm_prepacked_b).
#include <doctest/doctest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm.h"
#include "test_util.h"

namespace {

// Sets DL_GEMM_KERNEL for the scope, restoring the previous value.
// Forces a kernel for the scope (null: none forced).
struct ForceKernel : dl::test::ScopedEnv {
  explicit ForceKernel(const char* name) : ScopedEnv("DL_GEMM_KERNEL", name) {}
};

// The kernels this CPU can run (forcing one it lacks falls back to another name).
std::vector<std::string> supported_kernels() {
  std::vector<std::string> out;
  for (const char* k : {"portable", "avx2", "avx512"}) {
    ForceKernel f(k);
    if (std::string(dl::cpu::sgemm_kernel_name()) == k) out.push_back(k);
  }
  return out;
}

using Threads = dl::test::ScopedThreads;

// A row-major rows x cols matrix with row stride ld >= cols; padding holds a sentinel.
template <typename T>
struct Mat {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<T> v;
  Mat(int64_t r, int64_t c, int64_t pad, std::mt19937& rng, T pad_value = T(-777)) : rows(r), cols(c), ld(c + pad) {
    v.assign(static_cast<size_t>(std::max<int64_t>(1, r * ld)), pad_value);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) v[static_cast<size_t>(i * ld + j)] = static_cast<T>(u(rng));
  }
  T* data() { return v.data(); }
  const T* data() const { return v.data(); }
  T& at(int64_t i, int64_t j) { return v[static_cast<size_t>(i * ld + j)]; }
  const T& at(int64_t i, int64_t j) const { return v[static_cast<size_t>(i * ld + j)]; }
};

struct Case {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0;
  double alpha = 1, beta = 0;
  int64_t pad = 0;  // extra elements per row of A, B and C
  std::string kernel;
  int threads = 1;

  std::string str() const {
    std::ostringstream s;
    s << "kernel=" << kernel << " threads=" << threads << " ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N
      << " K=" << K << " alpha=" << alpha << " beta=" << beta << " pad=" << pad;
    return s.str();
  }
};

// Reference dot product from the stored operands, accumulated in double for float data (exact products, error
// ~1e-16 * K, far below the float tolerance) and in long double for double data.
template <typename T>
long double ref_dot(const Case& c, const Mat<T>& A, const Mat<T>& B, int64_t i, int64_t j) {
  using Acc = std::conditional_t<sizeof(T) == 4, double, long double>;
  Acc s = 0;
  for (int64_t k = 0; k < c.K; ++k) {
    const Acc a = c.ta ? A.at(k, i) : A.at(i, k);
    const Acc b = c.tb ? B.at(j, k) : B.at(k, j);
    s += a * b;
  }
  return s;
}

struct Worst {
  bool ok = true;
  double err = 0, tol = 0;
  int64_t i = -1, j = -1;
  double got = 0, want = 0;
  std::string what;
};

// Compares got (C after the call) with want (M x N reference, row-major, stride N) and checks that C's row padding
// is untouched.
template <typename T>
Worst compare(const Case& c, const Mat<T>& C, const std::vector<double>& want, double abs_tol_per_k, double rel_tol,
              T pad_value) {
  Worst w;
  double worst_ratio = -1;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      const double g = static_cast<double>(C.at(i, j));
      const double r = want[static_cast<size_t>(i * c.N + j)];
      const double tol =
          abs_tol_per_k * (static_cast<double>(c.K) * std::abs(c.alpha) + std::abs(c.beta) + 1.0) + rel_tol * std::abs(r);
      const double err = std::abs(g - r);
      const double ratio = std::isfinite(g) ? err / tol : std::numeric_limits<double>::infinity();
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        w.err = err, w.tol = tol, w.i = i, w.j = j, w.got = g, w.want = r;
      }
    }
  w.ok = worst_ratio <= 1.0;
  std::ostringstream s;
  s << c.str() << ": largest error " << w.err << " (tolerance " << w.tol << ") at C[" << w.i << "][" << w.j
    << "]: got " << w.got << ", want " << w.want;
  for (int64_t i = 0; i < c.M && w.ok; ++i)
    for (int64_t j = c.N; j < C.ld; ++j)
      if (!(C.at(i, j) == pad_value)) {
        w.ok = false;
        s << "; row padding C[" << i << "][" << j << "] overwritten with " << C.at(i, j);
        break;
      }
  w.what = s.str();
  return w;
}

// Runs one case through sgemm (or dgemm) and checks it against a long double reference (and, for float, the
// result of sgemm_reference too).
template <typename T>
Worst run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Mat<T> A(c.ta ? c.K : c.M, c.ta ? c.M : c.K, c.pad, rng);
  Mat<T> B(c.tb ? c.N : c.K, c.tb ? c.K : c.N, c.pad, rng);
  const T pad_value = T(-777);
  Mat<T> C(c.M, c.N, c.pad, rng, pad_value);
  if (c.beta == 0)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C.at(i, j) = std::numeric_limits<T>::quiet_NaN();
  std::vector<double> want(static_cast<size_t>(std::max<int64_t>(1, c.M * c.N)));
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      const long double prev = c.beta == 0 ? 0.0L : static_cast<long double>(c.beta) * C.at(i, j);
      want[static_cast<size_t>(i * c.N + j)] =
          static_cast<double>(static_cast<long double>(c.alpha) * ref_dot(c, A, B, i, j) + prev);
    }
  ForceKernel force(c.kernel.c_str());
  Threads threads(c.threads);
  if constexpr (sizeof(T) == 4) {
    dl::cpu::sgemm(c.ta, c.tb, c.M, c.N, c.K, static_cast<float>(c.alpha), A.data(), A.ld, B.data(), B.ld,
                   static_cast<float>(c.beta), C.data(), C.ld);
    return compare(c, C, want, 1e-5, 1e-5, pad_value);
  } else {
    dl::cpu::dgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), A.ld, B.data(), B.ld, c.beta, C.data(), C.ld);
    return compare(c, C, want, 1e-13, 1e-13, pad_value);
  }
}

const int64_t kOdd[] = {1, 2, 3, 5, 7, 13, 17, 31, 33, 63, 65, 100, 129, 257};

// Shapes: every M x N from a small odd set with a few K, plus mixes including the larger sizes.
std::vector<std::array<int64_t, 3>> shapes() {
  std::vector<std::array<int64_t, 3>> s;
  const int64_t small[] = {1, 2, 3, 5, 7, 13, 17, 31, 33};
  for (int64_t m : small)
    for (int64_t n : small)
      for (int64_t k : {int64_t(1), int64_t(7), int64_t(33)}) s.push_back({m, n, k});
  for (int64_t x : kOdd) {
    s.push_back({x, 17, 65});
    s.push_back({13, x, 63});
    s.push_back({5, 7, x});
    s.push_back({x, x, 3});
  }
  s.push_back({63, 65, 129});
  s.push_back({65, 63, 100});
  s.push_back({100, 129, 31});
  s.push_back({129, 33, 257});
  s.push_back({257, 31, 17});
  s.push_back({31, 257, 129});
  return s;
}

}  // namespace

TEST_CASE("sgemm_kernel_name reports a supported kernel and DL_GEMM_KERNEL forces one") {
  const std::string def = [] {
    ForceKernel none(nullptr);
    return std::string(dl::cpu::sgemm_kernel_name());
  }();
  CHECK((def == "portable" || def == "avx2" || def == "avx512"));
  const auto ks = supported_kernels();
  REQUIRE(!ks.empty());
  CHECK(ks.front() == "portable");
  CHECK(ks.back() == def);  // the default is the best supported
  {
    ForceKernel f("portable");
    CHECK(std::string(dl::cpu::sgemm_kernel_name()) == "portable");
  }
  {
    ForceKernel f("no-such-kernel");
    CHECK(std::string(dl::cpu::sgemm_kernel_name()) == def);
  }
  MESSAGE("default kernel: " << def << ", supported: " << ks.size());
}

TEST_CASE("sgemm_reference matches a long double triple loop") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] : {std::array<int64_t, 3>{1, 1, 1}, {7, 5, 3}, {65, 70, 129}, {3, 100, 17}}) {
        Case c{ta, tb, m, n, k, 0.75, 0.5, 2, "reference", 1};
        std::mt19937 rng(7);
        Mat<float> A(ta ? k : m, ta ? m : k, c.pad, rng), B(tb ? n : k, tb ? k : n, c.pad, rng);
        Mat<float> C(m, n, c.pad, rng, -777.0f);
        std::vector<double> want(static_cast<size_t>(m * n));
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j)
            want[static_cast<size_t>(i * n + j)] =
                static_cast<double>(0.75L * ref_dot(c, A, B, i, j) + 0.5L * C.at(i, j));
        dl::cpu::sgemm_reference(ta, tb, m, n, k, 0.75f, A.data(), A.ld, B.data(), B.ld, 0.5f, C.data(), C.ld);
        const Worst w = compare(c, C, want, 1e-7, 1e-7, -777.0f);
        CHECK_MESSAGE(w.ok, w.what);
      }
}

TEST_CASE("sgemm matches the reference: transposes x alpha/beta x odd shapes x kernels") {
  const auto ks = supported_kernels();
  const double ab[][2] = {{1, 0}, {1, 1}, {-0.5, 0}, {0.75, -1.25}, {2, 1}};
  for (const std::string& kern : ks) {
    int n_cases = 0, n_failed = 0;
    uint32_t seed = 1;
    for (const auto& s : shapes())
      for (int t = 0; t < 4; ++t) {
        // alpha/beta and padding cycle with the case so every combination meets many shapes.
        const auto& x = ab[(seed + t) % 5];
        Case c{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], x[0], x[1], (seed % 3 == 0) ? 0 : int64_t(seed % 5), kern, 1};
        const Worst w = run_case<float>(c, seed++);
        ++n_cases;
        if (!w.ok) ++n_failed;
        CHECK_MESSAGE(w.ok, w.what);
        if (n_failed > 10) break;
      }
    MESSAGE(kern << ": " << n_cases << " sgemm cases, " << n_failed << " failed");
  }
}

TEST_CASE("sgemm: every alpha/beta on each transpose, beta = 0 never reads C (NaN)") {
  for (const std::string& kern : supported_kernels())
    for (int t = 0; t < 4; ++t)
      for (double alpha : {1.0, -1.0, 0.5, 3.0})
        for (double beta : {0.0, 1.0, -1.0, 0.25}) {
          Case c{(t & 1) != 0, (t & 2) != 0, 37, 45, 29, alpha, beta, 3, kern, 1};
          const Worst w = run_case<float>(c, 99);
          CHECK_MESSAGE(w.ok, w.what);
        }
}

TEST_CASE("sgemm with K = 0 scales C by beta, M = 0 or N = 0 does nothing, alpha = 0 does not read A, B") {
  for (const std::string& kern : supported_kernels()) {
    ForceKernel f(kern.c_str());
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> C(6 * 7, nan);
    dl::cpu::sgemm(false, false, 6, 5, 0, 1.0f, nullptr, 1, nullptr, 5, 0.0f, C.data(), 7);
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 7; ++j) {
        if (j < 5)
          CHECK_MESSAGE(C[i * 7 + j] == 0.0f, kern << " K=0 beta=0: C[" << i << "][" << j << "] = " << C[i * 7 + j]);
        else
          CHECK(std::isnan(C[i * 7 + j]));  // padding untouched
      }
    for (float& x : C) x = 2.0f;
    dl::cpu::sgemm(true, true, 6, 5, 0, 1.0f, nullptr, 6, nullptr, 1, -1.5f, C.data(), 7);
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 7; ++j) CHECK(C[i * 7 + j] == (j < 5 ? -3.0f : 2.0f));
    dl::cpu::sgemm(false, false, 0, 5, 3, 1.0f, nullptr, 3, nullptr, 5, 0.0f, C.data(), 7);
    dl::cpu::sgemm(false, false, 6, 0, 3, 1.0f, nullptr, 3, nullptr, 5, 0.0f, C.data(), 7);
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 7; ++j) CHECK(C[i * 7 + j] == (j < 5 ? -3.0f : 2.0f));
    std::vector<float> A(6 * 3, nan), B(3 * 5, nan);
    dl::cpu::sgemm(false, false, 6, 5, 3, 0.0f, A.data(), 3, B.data(), 5, 0.5f, C.data(), 7);
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 5; ++j) CHECK(C[i * 7 + j] == -1.5f);
    // K = 0 through the general case checker too.
    const Worst w = run_case<float>(Case{false, true, 13, 17, 0, 1.0, 0.5, 2, kern, 1}, 5);
    CHECK_MESSAGE(w.ok, w.what);
  }
}

TEST_CASE("sgemm: shapes that cross the cache blocks (K > KC, M > MC, N > NC), 1, 2 and 3 threads") {
  const std::array<int64_t, 3> big[] = {{65, 129, 600},  {300, 70, 300},  {600, 37, 33},    {3, 4200, 5},
                                        {64, 1000, 576}, {32, 10, 512},   {1, 513, 300},    {300, 1, 300},
                                        {290, 290, 290}, {17, 3000, 260}, {700, 100, 20},   {100, 300, 1001},
                                        {33, 700, 1500}, {280, 200, 401}, {5000, 3, 7}};
  for (const std::string& kern : supported_kernels())
    for (int threads : {1, 2, 3})
      for (int t = 0; t < 4; ++t) {
        uint32_t seed = 11;
        for (const auto& s : big) {
          Case c{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0, (seed % 2) ? 0.0 : 0.5, int64_t(seed % 3), kern,
                 threads};
          const Worst w = run_case<float>(c, seed++);
          CHECK_MESSAGE(w.ok, w.what);
        }
      }
}

template <typename T>
struct AlignedBuffer {
  T* data;
  explicit AlignedBuffer(int64_t n)
      : data(static_cast<T*>(std::aligned_alloc(64, (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64))) {}
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

// gemm_pack_b + gemm_prepacked_b (Winograd's GEMMs): one B packed once, then products with several A (one of them
// transposed), against a
// double reference; shapes below and across the cache blocks (K > KC, M > MC, N not a multiple of the panel width);
// each kernel; a packing made for another panel width is refused.
template <typename T>
void check_prepacked(int64_t M, int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  Mat<T> B(K, N, 3, rng);
  AlignedBuffer<T> panels(dl::cpu::gemm_packed_b_size<T>(K, N));
  const dl::cpu::GemmPackedB<T> packed = dl::cpu::gemm_pack_b(B.data(), B.ld, K, N, panels.data);
  for (int rep = 0; rep < 4; ++rep) {
    const bool trans = rep % 2 == 1;  // odd products with op(A) = A^T, A stored K x M
    const T beta = rep >= 2 ? T(1) : T(0);  // the last two add onto C
    Mat<T> A(trans ? K : M, trans ? M : K, 2, rng);
    Mat<T> C(M, N, 1, rng, T(-777));
    const Mat<T> C0 = C;
    dl::cpu::gemm_prepacked_b(M, A.data(), A.ld, packed, C.data(), C.ld, trans, beta);
    double worst = 0;
    bool pad_kept = true;
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        long double r = beta * static_cast<long double>(C0.at(i, j));
        for (int64_t k = 0; k < K; ++k) r += static_cast<long double>(trans ? A.at(k, i) : A.at(i, k)) * B.at(k, j);
        worst = std::max(worst, static_cast<double>(std::abs(static_cast<long double>(C.at(i, j)) - r)));
      }
      pad_kept = pad_kept && C.v[static_cast<size_t>(i * C.ld + N)] == T(-777);
    }
    const double tol = (sizeof(T) == 4 ? 1e-6 : 1e-14) * static_cast<double>(K);
    CHECK_MESSAGE(worst <= tol, "M=" << M << " N=" << N << " K=" << K << " error " << worst << " tolerance " << tol);
    CHECK(pad_kept);
  }
}

TEST_CASE("gemm_prepacked_b: B packed once, products against a reference on each kernel, and a foreign packing refused") {
  const std::array<int64_t, 3> shapes[] = {{1, 1, 1},    {24, 64, 64},  {7, 17, 9},     {300, 70, 600},
                                           {61, 512, 33}, {100, 31, 1030}, {24, 256, 256}, {13, 5, 700}};
  for (const std::string& kern : supported_kernels()) {
    ForceKernel f(kern.c_str());
    INFO("kernel " << kern);
    uint32_t seed = 3;
    for (const auto& s : shapes) {
      check_prepacked<float>(s[0], s[1], s[2], seed++);
      check_prepacked<double>(s[0], s[1], s[2], seed++);
    }
  }
  // packed for one kernel's panels, multiplied under a kernel with another width
  const auto kernels = supported_kernels();
  for (const std::string& k1 : kernels)
    for (const std::string& k2 : kernels) {
      int w1 = 0, w2 = 0;
      std::vector<float> b(64 * 40, 1.0f), a(8 * 64, 1.0f), c(8 * 40);
      AlignedBuffer<float> panels(64 * 64);  // room for any panel width up to 64
      dl::cpu::GemmPackedB<float> packed;
      {
        ForceKernel f(k1.c_str());
        w1 = dl::cpu::sgemm_panel_width();
        REQUIRE(dl::cpu::gemm_packed_b_size<float>(64, 40) <= 64 * 64);
        packed = dl::cpu::gemm_pack_b(b.data(), 40, 64, 40, panels.data);
      }
      ForceKernel f(k2.c_str());
      w2 = dl::cpu::sgemm_panel_width();
      if (w1 == w2) {
        dl::cpu::gemm_prepacked_b(8, a.data(), 64, packed, c.data(), 40);
        CHECK(c[0] == 64.0f);
      } else {
        CHECK_THROWS_WITH(dl::cpu::gemm_prepacked_b(8, a.data(), 64, packed, c.data(), 40),
                          doctest::Contains("packed for panels of"));
      }
      CHECK_THROWS_WITH(dl::cpu::gemm_pack_b(b.data(), 40, 64, 40, panels.data + 1),
                        doctest::Contains("64-byte aligned"));
    }
}

TEST_CASE("sgemm inside an OpenMP parallel region runs on the calling thread and stays correct") {
  const auto ks = supported_kernels();
  const std::string kern = ks.back();
  Threads threads(2);
  std::vector<int> ok(4, 0);
  std::vector<std::string> what(4);
#pragma omp parallel for num_threads(2)
  for (int t = 0; t < 4; ++t) {
    std::mt19937 rng(static_cast<uint32_t>(t));
    const int64_t M = 70 + t, N = 90, K = 300;
    Mat<float> A(M, K, 1, rng), B(K, N, 0, rng), C(M, N, 2, rng, -777.0f), R(M, N, 2, rng, -777.0f);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) R.at(i, j) = C.at(i, j);
    dl::cpu::sgemm(false, false, M, N, K, 1.0f, A.data(), A.ld, B.data(), B.ld, 1.0f, C.data(), C.ld);
    dl::cpu::sgemm_reference(false, false, M, N, K, 1.0f, A.data(), A.ld, B.data(), B.ld, 1.0f, R.data(), R.ld);
    Case c{false, false, M, N, K, 1.0, 1.0, 2, kern, 1};
    std::vector<double> want(static_cast<size_t>(M * N));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) want[static_cast<size_t>(i * N + j)] = R.at(i, j);
    const Worst w = compare(c, C, want, 1e-5, 1e-5, -777.0f);
    ok[static_cast<size_t>(t)] = w.ok ? 1 : 0;
    what[static_cast<size_t>(t)] = w.what;
  }
  for (int t = 0; t < 4; ++t) CHECK_MESSAGE(ok[static_cast<size_t>(t)] == 1, what[static_cast<size_t>(t)]);
}

TEST_CASE("dgemm matches a long double reference: transposes x alpha/beta x odd shapes x kernels") {
  const double ab[][2] = {{1, 0}, {1, 1}, {-0.5, 0}, {0.75, -1.25}};
  for (const std::string& kern : supported_kernels()) {
    uint32_t seed = 3;
    int n_failed = 0;
    for (const auto& s : shapes()) {
      if (s[0] * s[1] * s[2] > 300000) continue;
      for (int t = 0; t < 4; ++t) {
        const auto& x = ab[(seed + t) % 4];
        Case c{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], x[0], x[1], int64_t(seed % 4), kern, 1};
        const Worst w = run_case<double>(c, seed++);
        if (!w.ok) ++n_failed;
        CHECK_MESSAGE(w.ok, w.what);
      }
      if (n_failed > 10) break;
    }
    for (int threads : {1, 2})
      for (const auto& s : {std::array<int64_t, 3>{300, 70, 300}, {40, 2100, 270}, {150, 150, 0}}) {
        Case c{true, false, s[0], s[1], s[2], 1.0, 0.0, 1, kern, threads};
        const Worst w = run_case<double>(c, seed++);
        CHECK_MESSAGE(w.ok, w.what);
      }
  }
}

namespace {
// A directory laid out as /sys/devices/system/cpu/cpu0/cache: one index per (level, type, size, ways, sharing).
struct FakeCacheDir {
  std::filesystem::path dir;
  explicit FakeCacheDir(const std::vector<std::array<std::string, 5>>& levels) {
    dir = std::filesystem::temp_directory_path() / ("dl-cache-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(counter()++));
    std::filesystem::create_directories(dir);
    for (size_t i = 0; i < levels.size(); ++i) {
      const auto d = dir / ("index" + std::to_string(i));
      std::filesystem::create_directories(d);
      const char* names[] = {"level", "type", "size", "ways_of_associativity", "shared_cpu_list"};
      for (int f = 0; f < 5; ++f) std::ofstream(d / names[f]) << levels[i][static_cast<size_t>(f)] << "\n";
    }
  }
  ~FakeCacheDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};
}  // namespace

TEST_CASE("sgemm's cache blocks are derived from the cache sizes Linux reports") {
  using dl::cpu::CacheInfo;
  // a Zen 4 guest (what this project met as "AMD EPYC") and a Sapphire Rapids one
  FakeCacheDir zen4({{"1", "Data", "32K", "8", "0"},
                     {"1", "Instruction", "32K", "8", "0"},
                     {"2", "Unified", "1024K", "8", "0"},
                     {"3", "Unified", "32768K", "16", "0-1"}});
  FakeCacheDir spr({{"1", "Data", "48K", "12", "0"},
                    {"1", "Instruction", "32K", "8", "0"},
                    {"2", "Unified", "2048K", "16", "0"},
                    {"3", "Unified", "107520K", "15", "0-1,4,6-7"}});
  const CacheInfo a = dl::cpu::read_cache_info(zen4.dir.string()), b = dl::cpu::read_cache_info(spr.dir.string());
  CHECK(a.l1d.bytes == 32 << 10);
  CHECK(a.l1d.ways == 8);
  CHECK(a.l2.bytes == 1 << 20);
  CHECK(a.l3.sharing == 2);
  CHECK(a.l3.per_cpu() == 16 << 20);
  CHECK(b.l1d.bytes == 48 << 10);
  CHECK(b.l3.sharing == 5);
  CHECK(a.str().find("L1d 32 KiB 8-way") != std::string::npos);
  // the formulas (gemm.cpp, set_blocks) on the AVX-512 kernel's 14 x 32
  const auto za = dl::cpu::sgemm_blocks_for(14, 32, a), sb = dl::cpu::sgemm_blocks_for(14, 32, b);
  CHECK(za.kc == 256);   // 32 KiB / (32 * 4 B)
  CHECK(za.mc == 252);   // 256 KiB / (256 * 4 B) = 256, down to a multiple of 14
  CHECK(za.nc == 4096);  // 4 MiB / (256 * 4 B)
  CHECK(sb.kc == 384);   // 48 KiB / 128 B
  CHECK(sb.mc == 336);   // 512 KiB / 1536 B = 341 -> 336
  CHECK(sb.nc == 3584);  // 105 MiB shared by 5 CPUs, a quarter of that over 1536 B
  for (const auto& [blocks, caches] : {std::pair{za, a}, std::pair{sb, b}}) {
    CHECK(blocks.kc * blocks.nr * 4 <= caches.l1d.bytes);      // the B micro-panel fits L1
    CHECK(blocks.mc * blocks.kc * 4 <= caches.l2.bytes / 4);   // the A block, a quarter of L2
    CHECK(blocks.kc * blocks.nc * 4 <= caches.l3.per_cpu() / 4);
    CHECK(blocks.mc % blocks.mr == 0);
    CHECK(blocks.nc % blocks.nr == 0);
  }
  // nothing readable (no such directory, or malformed sizes): the smallest current caches, within the clamps
  FakeCacheDir broken({{"1", "Data", "lots", "8", "0"}, {"2", "Unified", "-5K", "8", "0"}});
  for (const std::string& dir : {std::string("/nonexistent/dl-cache"), broken.dir.string()}) {
    INFO(dir);
    const CacheInfo none = dl::cpu::read_cache_info(dir);
    CHECK(none.l1d.bytes == 0);
    CHECK(none.source == "none");
    const auto d = dl::cpu::sgemm_blocks_for(14, 32, none);
    CHECK(d.kc == 256);  // 32 KiB L1d, 512 KiB L2, 4 MiB of L3
    CHECK(d.mc == 126);
    CHECK(d.nc == 1024);
  }
  // this machine's: what sgemm uses, and DL_GEMM_BLOCKS overrides it (a malformed value is ignored)
  const auto mine = dl::cpu::sgemm_blocks();
  CHECK(mine.kc >= 64);
  CHECK(mine.kc <= 512);
  {
    dl::test::ScopedEnv e("DL_GEMM_BLOCKS", "48,30,100");
    const auto o = dl::cpu::sgemm_blocks();
    CHECK(o.kc == 48);
    CHECK(o.mc == std::max<int64_t>(o.mr, 30 / o.mr * o.mr));
    CHECK(o.nc == std::max<int64_t>(o.nr, 100 / o.nr * o.nr));
  }
  {
    dl::test::ScopedEnv e("DL_GEMM_BLOCKS", "48,30");
    CHECK(dl::cpu::sgemm_blocks().kc == mine.kc);
  }
}

TEST_CASE("sgemm stays correct with other cache blocks (DL_GEMM_BLOCKS): tiny, uneven and huge") {
  const std::array<int64_t, 3> shapes[] = {{65, 129, 600}, {300, 70, 300}, {33, 700, 1500}, {600, 37, 33}, {1, 513, 300}};
  for (const char* blocks : {"16,14,32", "100,50,70", "512,1024,8192"}) {
    dl::test::ScopedEnv e("DL_GEMM_BLOCKS", blocks);
    for (const std::string& kern : supported_kernels())
      for (int threads : {1, 2}) {
        uint32_t seed = 5;
        for (const auto& s : shapes)
          for (int t = 0; t < 4; ++t) {
            Case c{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0, (seed % 2) ? 0.0 : 0.5, int64_t(seed % 3), kern,
                   threads};
            const Worst w = run_case<float>(c, seed++);
            INFO("blocks ", blocks);
            CHECK_MESSAGE(w.ok, w.what);
          }
      }
  }
}
