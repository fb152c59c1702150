// AVX2 + FMA GEMM micro-kernels (float and double). Compiled with -mavx2 -mfma; only called after gemm.cpp
// checked the CPU supports AVX2 and FMA (see dl::cpu::sgemm_kernel_name).
//
// Micro-kernel: C[mr x nr] (=|+=) alpha * A_panel * B_panel with packed operands:
//   A panel: for each k, mr consecutive values (a[k*mr + i]), mr <= MR (the tail panel is packed with exactly mr rows).
//   B panel: for each k, NR consecutive values (b[k*NR + j]), zero padded past nr.
// Register block: MR rows x NV vectors (6 x 16 floats, 6 x 8 doubles: 12 accumulators). A tile with fewer rows
// uses the instance compiled for exactly that many rows, fewer columns uses fewer vectors and a masked
// load/store on the last one.
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "tensor/cpu/avx2_transpose.h"
#include "tensor/cpu/gemm_kernel_types.h"

#include <algorithm>
#include <array>
#include <utility>

namespace dl::cpu::detail {

namespace {

template <typename T>
struct V;

template <>
struct V<float> {
  using reg = __m256;
  using mask = __m256i;
  static constexpr int W = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg load(const float* p) { return _mm256_load_ps(p); }
  static reg bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static mask lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg loadm(mask m, const float* p) { return _mm256_maskload_ps(p, m); }
  static void storem(float* p, mask m, reg v) { _mm256_maskstore_ps(p, m, v); }
};

template <>
struct V<double> {
  using reg = __m256d;
  using mask = __m256i;
  static constexpr int W = 4;
  static reg zero() { return _mm256_setzero_pd(); }
  static reg set1(double x) { return _mm256_set1_pd(x); }
  static reg load(const double* p) { return _mm256_load_pd(p); }
  static reg bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static mask lanes(int n) { return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)); }
  static reg loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void storeu(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static reg loadm(mask m, const double* p) { return _mm256_maskload_pd(p, m); }
  static void storem(double* p, mask m, reg v) { _mm256_maskstore_pd(p, m, v); }
};

// ---------------------------------------------------------------- packing (generic, MR/NR known at compile time)

#include "tensor/cpu/gemm_pack.inc"

// One register tile: MR rows x NV vectors. NVMAX*W is the B panel's row stride; nlast is the number of valid
// lanes (1..W) in the last vector.
// RowA: A not packed but MR rows of a matrix, row i at a + i * lda (its k-th value at + k): the rows of a block of
// op(A) that gemm_prepacked_b reads in place (dispatch_rows).
template <typename T, int MR, int NV, int NVMAX, bool RowA = false>
void tile(int64_t kc, const T* __restrict a, int64_t lda, const T* __restrict b, T* __restrict c, int64_t ldc,
          T alpha, T beta, int nlast, const char* pf, int64_t pf_ld, int64_t pf_lines, int64_t pf_n) {
  using R = V<T>;
  using reg = typename R::reg;
  constexpr int W = R::W;
  constexpr int NR = NVMAX * W;
  reg acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = R::zero();

#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NV * W - 1), _MM_HINT_T0);
  }

  // One k step: NV vectors of B, MR broadcasts of A, MR*NV FMAs.
  auto step = [&]() __attribute__((always_inline)) {
    reg bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = R::load(b + v * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const reg av = R::bcast(RowA ? a + i * lda : a + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = R::fma(av, bv[v], acc[i][v]);
    }
    a += RowA ? 1 : MR;
    b += NR;
  };
  const int64_t np = std::min(pf_n, kc);
  int64_t line = 0;
#pragma GCC unroll 2
  for (int64_t q = 0; q < np; ++q) {
    _mm_prefetch(pf + line * 64, _MM_HINT_T0);
    if (++line == pf_lines) line = 0, pf += pf_ld;
    step();
  }
#pragma GCC unroll 2
  for (int64_t k = np; k < kc; ++k) step();

  const reg va = R::set1(alpha);
  const reg vb = R::set1(beta);
  const typename R::mask mlast = R::lanes(nlast);
  const bool partial = nlast < W;
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    T* cr = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      T* cv = cr + v * W;
      if (v == NV - 1 && partial) {
        reg r = R::mul(acc[i][v], va);
        if (beta != T(0)) r = R::fma(R::loadm(mlast, cv), vb, r);
        R::storem(cv, mlast, r);
      } else if (beta == T(0)) {
        R::storeu(cv, R::mul(acc[i][v], va));
      } else if (beta == T(1)) {
        R::storeu(cv, R::fma(acc[i][v], va, R::loadu(cv)));
      } else {
        R::storeu(cv, R::fma(R::loadu(cv), vb, R::mul(acc[i][v], va)));
      }
    }
  }
}

template <typename T>
using TileFn = void (*)(int64_t, const T*, int64_t, const T*, T*, int64_t, T, T, int, const char*, int64_t, int64_t,
                        int64_t);

template <typename T, int MRMAX, int NVMAX, bool RowA, int NV, std::size_t... I>
constexpr std::array<TileFn<T>, MRMAX> row_of_tiles(std::index_sequence<I...>) {
  return {&tile<T, int(I) + 1, NV, NVMAX, RowA>...};
}

// table[nv - 1][mr - 1] = tile<T, mr, nv, NVMAX, RowA>.
template <typename T, int MRMAX, int NVMAX, bool RowA, std::size_t... V>
constexpr std::array<std::array<TileFn<T>, MRMAX>, NVMAX> table_of_tiles(std::index_sequence<V...>) {
  return {row_of_tiles<T, MRMAX, NVMAX, RowA, int(V) + 1>(std::make_index_sequence<MRMAX>{})...};
}

template <typename T, int MRMAX, int NVMAX, bool RowA>
struct Tiles {
  static constexpr std::array<std::array<TileFn<T>, MRMAX>, NVMAX> table =
      table_of_tiles<T, MRMAX, NVMAX, RowA>(std::make_index_sequence<NVMAX>{});
};

template <typename T, int MRMAX, int NVMAX, bool RowA>
void tile_for(int64_t mr, int64_t nr, int64_t kc, const T* a, int64_t lda, const T* b, T* c, int64_t ldc, T alpha,
              T beta, const void* pf, int64_t pf_ld, int64_t pf_lines, int64_t pf_n) {
  constexpr int W = V<T>::W;
  const int nv = static_cast<int>((nr + W - 1) / W);
  const int nlast = static_cast<int>(nr - (nv - 1) * W);
  Tiles<T, MRMAX, NVMAX, RowA>::table[nv - 1][mr - 1](kc, a, lda, b, c, ldc, alpha, beta, nlast,
                                                      static_cast<const char*>(pf), pf_ld, pf_lines, pf_n);
}

template <typename T, int MRMAX, int NVMAX>
void dispatch(int64_t mr, int64_t nr, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta,
              const void* pf, int64_t pf_ld, int64_t pf_lines, int64_t pf_n) {
  tile_for<T, MRMAX, NVMAX, false>(mr, nr, kc, a, 0, b, c, ldc, alpha, beta, pf, pf_ld, pf_lines, pf_n);
}

// The same with op(A)'s rows read in place (row i at a + i * lda), not from a packed panel.
template <typename T, int MRMAX, int NVMAX>
void dispatch_rows(int64_t mr, int64_t nr, int64_t kc, const T* a, int64_t lda, const T* b, T* c, int64_t ldc,
                   T alpha, T beta) {
  tile_for<T, MRMAX, NVMAX, true>(mr, nr, kc, a, lda, b, c, ldc, alpha, beta, nullptr, 0, 0, 0);
}

// op(A) into panels of 6 rows (pack_a_generic's layout): where A is not transposed, 8 values of each of the 6
// rows at a time through an 8 x 8 register transpose, each k's 6 values stored as 4 + 2; a last panel of fewer
// rows by pack_a_generic. The scalar loops took 12% of Winograd's forward on ResNet18's 64x16x16 -> 64 layer (its
// blocks of transformed tiles are A, tn x C). Where A is transposed (op(A) row i is A's column i), 8 rows of A at
// a time go to every panel, each k's 6 values as 4 + 2, so those rows stay in L1; panel by panel, each panel's
// walk down kc rows lda apart read every line of A again for the next panel: 9% of the im2col + GEMM input
// gradient of ResNet18's 256x4x4 -> 512 3x3/2 layer (A = W, K x 2304), Zen 4 guest.
void pack_a_s6(bool trans, const float* A, int64_t lda, int64_t mc, int64_t kc, float* dst) {
  constexpr int MR = 6;
  const int64_t full = mc / MR * MR;
  if (trans) {
    constexpr int64_t kRows = 8;
    for (int64_t k0 = 0; k0 < kc; k0 += kRows) {
      const int64_t k1 = std::min(kc, k0 + kRows);
      for (int64_t ir = 0; ir < full; ir += MR) {
        float* d = dst + ir * kc;
        for (int64_t k = k0; k < k1; ++k) {
          const float* s = A + k * lda + ir;
          _mm_storeu_ps(d + k * MR, _mm_loadu_ps(s));
          _mm_storel_pi(reinterpret_cast<__m64*>(d + k * MR + 4),
                        _mm_loadl_pi(_mm_setzero_ps(), reinterpret_cast<const __m64*>(s + 4)));
        }
      }
    }
    if (full < mc) pack_a_generic<float, MR>(true, A + full, lda, mc - full, kc, dst + full * kc);
    return;
  }
  for (int64_t ir = 0; ir < full; ir += MR) {
    const float* s = A + ir * lda;
    float* d = dst + ir * kc;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) r[i] = _mm256_loadu_ps(s + i * lda + k);
      r[6] = r[7] = _mm256_setzero_ps();
      transpose8(r);
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) {
        float* dk = d + (k + q) * MR;
        _mm_storeu_ps(dk, _mm256_castps256_ps128(r[q]));
        _mm_storel_pi(reinterpret_cast<__m64*>(dk + 4), _mm256_extractf128_ps(r[q], 1));
      }
    }
    for (; k < kc; ++k)
      for (int i = 0; i < MR; ++i) d[k * MR + i] = s[i * lda + k];
  }
  if (full < mc) pack_a_generic<float, MR>(false, A + full * lda, lda, mc - full, kc, dst + full * kc);
}

constexpr int kSMR = 6, kSNV = 2;  // float: 6 x 16
constexpr int kDMR = 6, kDNV = 2;  // double: 6 x 8

}  // namespace

void gemm_avx2_sgemm(int* mr, int* nr, SgemmUkr* ukr, SPackA* pack_a, SPackB* pack_b, SgemmRowsUkr* ukr_rows) {
  *mr = kSMR;
  *nr = kSNV * V<float>::W;
  *ukr = &dispatch<float, kSMR, kSNV>;
  *ukr_rows = &dispatch_rows<float, kSMR, kSNV>;
  static_assert(kSMR == 6, "pack_a_s6 packs panels of 6 rows");
  *pack_a = &pack_a_s6;
  *pack_b = &pack_b_generic<float, kSNV * V<float>::W>;
}

void gemm_avx2_dgemm(int* mr, int* nr, DgemmUkr* ukr, DPackA* pack_a, DPackB* pack_b, DgemmRowsUkr* ukr_rows) {
  *mr = kDMR;
  *nr = kDNV * V<double>::W;
  *ukr = &dispatch<double, kDMR, kDNV>;
  *ukr_rows = &dispatch_rows<double, kDMR, kDNV>;
  *pack_a = &pack_a_generic<double, kDMR>;
  *pack_b = &pack_b_generic<double, kDNV * V<double>::W>;
}

}  // namespace dl::cpu::detail

#endif
