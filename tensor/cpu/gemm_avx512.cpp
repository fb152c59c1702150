// AVX-512 GEMM micro-kernels and packing (float and double). Compiled with -mavx512f -mavx512bw -mavx512vl -mfma;
// only called after gemm.cpp checked the CPU supports AVX-512 (see dl::cpu::sgemm_kernel_name).
//
// Micro-kernel: C[mr x nr] (=|+=) alpha * A_panel * B_panel with packed operands:
//   A panel: for each k, mr consecutive values (a[k*mr + i]), mr <= MR (the tail panel is packed with exactly mr rows).
//   B panel: for each k, NR consecutive values (b[k*NR + j]), zero padded past nr.
// Register block: MR rows x NV vectors; each k step loads NV vectors of B, broadcasts MR values of A and does
// MR*NV FMAs. float: 14 x 32 (28 zmm accumulators, 2 loads + 14 broadcasts per 28 FMAs; 12 x 32, 8 x 48 and 6 x 64
// measured the same or slower on Zen 5), double: 14 x 16. A tile with fewer rows uses the instance compiled for
// exactly that many rows, fewer columns uses fewer vectors and a masked load/store on the last one.
// Float packing uses in-register 16 x 16 transposes for the transposed layouts and masked loads for the edges.
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

// GCC 12's AVX-512 shuffle intrinsics start from _mm512_undefined_ps() (`__m512 __Y = __Y;`), which
// -Wmaybe-uninitialized reports once inlined here; it is a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <array>
#include <utility>

#include "tensor/cpu/avx512_transpose.h"
#include "tensor/cpu/gemm_kernel_types.h"

namespace dl::cpu::detail {

namespace {

template <typename T>
struct V;

template <>
struct V<float> {
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int W = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_load_ps(p); }
  static reg bcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static mask lanes(int n) { return static_cast<mask>((1u << n) - 1u); }
  static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg loadm(mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void storem(float* p, mask m, reg v) { _mm512_mask_storeu_ps(p, m, v); }
};

template <>
struct V<double> {
  using reg = __m512d;
  using mask = __mmask8;
  static constexpr int W = 8;
  static reg zero() { return _mm512_setzero_pd(); }
  static reg set1(double x) { return _mm512_set1_pd(x); }
  static reg load(const double* p) { return _mm512_load_pd(p); }
  static reg bcast(const double* p) { return _mm512_set1_pd(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static mask lanes(int n) { return static_cast<mask>((1u << n) - 1u); }
  static reg loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void storeu(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static reg loadm(mask m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void storem(double* p, mask m, reg v) { _mm512_mask_storeu_pd(p, m, v); }
};

// ---------------------------------------------------------------- packing (generic, MR/NR known at compile time)

#include "tensor/cpu/gemm_pack.inc"

// One register tile: MR rows x NV vectors. NVMAX*W is the B panel's row stride; nlast is the number of valid
// lanes (1..W) in the last vector.
template <typename T, int MR, int NV, int NVMAX>
void tile(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c, int64_t ldc, T alpha,
          T beta, int nlast, const char* pf, int64_t pf_ld, int64_t pf_lines, int64_t pf_n) {
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
      const reg av = R::bcast(a + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = R::fma(av, bv[v], acc[i][v]);
    }
    a += MR;
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
using TileFn = void (*)(int64_t, const T*, const T*, T*, int64_t, T, T, int, const char*, int64_t, int64_t,
                        int64_t);

template <typename T, int MRMAX, int NVMAX, int NV, std::size_t... I>
constexpr std::array<TileFn<T>, MRMAX> row_of_tiles(std::index_sequence<I...>) {
  return {&tile<T, int(I) + 1, NV, NVMAX>...};
}

// table[nv - 1][mr - 1] = tile<T, mr, nv, NVMAX>.
template <typename T, int MRMAX, int NVMAX, std::size_t... V>
constexpr std::array<std::array<TileFn<T>, MRMAX>, NVMAX> table_of_tiles(std::index_sequence<V...>) {
  return {row_of_tiles<T, MRMAX, NVMAX, int(V) + 1>(std::make_index_sequence<MRMAX>{})...};
}

template <typename T, int MRMAX, int NVMAX>
struct Tiles {
  static constexpr std::array<std::array<TileFn<T>, MRMAX>, NVMAX> table =
      table_of_tiles<T, MRMAX, NVMAX>(std::make_index_sequence<NVMAX>{});
};

template <typename T, int MRMAX, int NVMAX>
void dispatch(int64_t mr, int64_t nr, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta,
              const void* pf, int64_t pf_ld, int64_t pf_lines, int64_t pf_n) {
  constexpr int W = V<T>::W;
  const int nv = static_cast<int>((nr + W - 1) / W);
  const int nlast = static_cast<int>(nr - (nv - 1) * W);
  Tiles<T, MRMAX, NVMAX>::table[nv - 1][mr - 1](kc, a, b, c, ldc, alpha, beta, nlast, static_cast<const char*>(pf),
                                                pf_ld, pf_lines, pf_n);
}

constexpr int kSMR = 14, kSNV = 2;  // float: 14 x 32 (28 accumulators)
constexpr int kDMR = 14, kDNV = 2;  // double: 14 x 16 (28 accumulators)

// ---------------------------------------------------------------- packing, float, AVX-512 (MR = 14, NR = 32)


// rows (< 16) source rows of (up to) 16 contiguous values each -> out[kk] = column kk (rows lanes, zero past
// rows), for kk < kn.
inline void load_transpose16(const float* s, int64_t ld, int rows, int kn, __m512 r[16]) {
  const __mmask16 km = static_cast<__mmask16>((1u << kn) - 1u);
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(km, s + i * ld) : _mm512_setzero_ps();
  transpose16(r);
}

void pack_a_avx512(bool trans, const float* A, int64_t lda, int64_t mc, int64_t kc, float* dst) {
  constexpr int MR = kSMR;
  static_assert(MR <= 16, "pack_a_avx512 transposes 16 x 16 blocks");
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
    const __mmask16 mm = static_cast<__mmask16>((1u << mr) - 1u);
    float* d = dst + ir * kc;
    if (trans) {
      const float* s = A + ir;  // element (i, k) at s[k*lda + i]
      for (int64_t k = 0; k < kc; ++k) _mm512_mask_storeu_ps(d + k * mr, mm, _mm512_maskz_loadu_ps(mm, s + k * lda));
    } else {
      const float* s = A + ir * lda;  // element (i, k) at s[i*lda + k]
      for (int64_t k = 0; k < kc; k += 16) {
        const int kn = static_cast<int>(std::min<int64_t>(16, kc - k));
        __m512 r[16];
        load_transpose16(s + k, lda, mr, kn, r);
        for (int kk = 0; kk < kn; ++kk) _mm512_mask_storeu_ps(d + (k + kk) * mr, mm, r[kk]);
      }
    }
  }
}

void pack_b_avx512(bool trans, const float* B, int64_t ldb, int64_t kc, int64_t nc, int64_t ps, float* dst) {
  constexpr int NR = kSNV * 16;
  static_assert(NR == 32, "pack_b_avx512 packs 32-column panels");
  if (!trans) {
    constexpr int G = 4;  // panels per group; source rows are read in runs of G*NR values
    for (int64_t j0 = 0; j0 < nc; j0 += G * NR) {
      const int64_t jn = std::min<int64_t>(G * NR, nc - j0);
      const int64_t full = jn / NR;
      const int rem = static_cast<int>(jn % NR);
      const __mmask16 m0 = static_cast<__mmask16>(rem >= 16 ? 0xFFFFu : (1u << rem) - 1u);
      const __mmask16 m1 = static_cast<__mmask16>(rem <= 16 ? 0u : (1u << (rem - 16)) - 1u);
      float* d = dst + j0 * ps;
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = B + k * ldb + j0;
        for (int64_t g = 0; g < full; ++g) {
          float* dg = d + g * NR * ps + k * NR;
          _mm512_store_ps(dg, _mm512_loadu_ps(s + g * NR));
          _mm512_store_ps(dg + 16, _mm512_loadu_ps(s + g * NR + 16));
        }
        if (rem != 0) {
          float* dg = d + full * NR * ps + k * NR;
          _mm512_store_ps(dg, _mm512_maskz_loadu_ps(m0, s + full * NR));
          _mm512_store_ps(dg + 16, _mm512_maskz_loadu_ps(m1, s + full * NR + 16));
        }
      }
    }
    return;
  }
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
    float* d = dst + jr * ps;
    const float* s = B + jr * ldb;  // element (k, j) at s[j*ldb + k]
    for (int64_t k = 0; k < kc; k += 16) {
      const int kn = static_cast<int>(std::min<int64_t>(16, kc - k));
      __m512 r[16];
      load_transpose16(s + k, ldb, std::min(nr, 16), kn, r);
      for (int kk = 0; kk < kn; ++kk) _mm512_store_ps(d + (k + kk) * NR, r[kk]);
      load_transpose16(s + 16 * ldb + k, ldb, std::max(nr - 16, 0), kn, r);
      for (int kk = 0; kk < kn; ++kk) _mm512_store_ps(d + (k + kk) * NR + 16, r[kk]);
    }
  }
}

}  // namespace

void gemm_avx512_sgemm(int* mr, int* nr, SgemmUkr* ukr, SPackA* pack_a, SPackB* pack_b) {
  *mr = kSMR;
  *nr = kSNV * V<float>::W;
  *ukr = &dispatch<float, kSMR, kSNV>;
  *pack_a = &pack_a_avx512;
  *pack_b = &pack_b_avx512;
}

void gemm_avx512_dgemm(int* mr, int* nr, DgemmUkr* ukr, DPackA* pack_a, DPackB* pack_b) {
  *mr = kDMR;
  *nr = kDNV * V<double>::W;
  *ukr = &dispatch<double, kDMR, kDNV>;
  *pack_a = &pack_a_generic<double, kDMR>;
  *pack_b = &pack_b_generic<double, kDNV * V<double>::W>;
}

}  // namespace dl::cpu::detail

#endif
