// bfloat16 GEMM: AVX512_BF16 micro-kernel, the packing of both fast kernels (AVX512_BF16 and AMX layouts), the
// float <-> bfloat16 array conversions and the vdpbf16ps peak loop. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512bf16; only called after gemm_bf16.cpp checked the CPU (every AMX CPU also has AVX512_BF16,
// which is why the AMX packing lives here too).
//
// Why pairs of k: vdpbf16ps (and AMX's tdpbf16ps) multiply PAIRS of bfloat16 values held in one 32-bit lane and
// add both products to a float32 lane: acc[j] += a[2p]*b[2p][j] + a[2p+1]*b[2p+1][j]. So B is packed with the two
// k values of a pair side by side for each column ("VNNI layout"), and A's pairs are broadcast as one 32-bit value.
// Every packing routine below is built from one step: a 16 x 16 block of such 32-bit pairs, read from op(X) with
// the pair index p and the column/row index j on either axis (pairs_pj / pairs_jp), converting float32 to
// bfloat16 on the way with vcvtne2ps2bf16 / vcvtneps2bf16 (round to nearest even; the instruction flushes float32
// denormals to zero, which the dot-product instructions would do anyway).
//
// AVX512_BF16 micro-kernel: 14 rows x 32 columns of C in 28 zmm accumulators (as sgemm's AVX-512 kernel: two
// B loads and 14 broadcasts per 28 vdpbf16ps). Layouts (u16 units):
//   A panel: for each pair p, 14 rows x 2 values (a[p*28 + 2i + {0,1}]);  B panel: for each p, 32 cols x 2 values.
// AMX layout (used by gemm_bf16_amx.cpp), per K block of 32 (kb):
//   A panel (32 rows): two 16 x 32 tiles, rows 0-15 then 16-31, each row 32 consecutive k (64 bytes).
//   B panel (32 cols): two 16 x 16-pair tiles, cols 0-15 then 16-31, each tile row one pair p for 16 columns.
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <chrono>
#include <cstring>

#include "tensor/cpu/avx512_transpose.h"
#include "tensor/cpu/gemm_bf16_kernel.h"

namespace dl::cpu::detail {
namespace {

inline __mmask16 mask16(int n) { return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << std::max(n, 0)) - 1u); }
inline __mmask32 mask32(int n) {
  return n >= 32 ? __mmask32(0xFFFFFFFFu) : static_cast<__mmask32>((1u << std::max(n, 0)) - 1u);
}

// 16 consecutive values (n valid, zero past) as bfloat16 in a ymm.
inline __m256i load16(const float* p, int n) {
  if (n <= 0) return _mm256_setzero_si256();
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask16(n), p)));
}
inline __m256i load16(const uint16_t* p, int n) {
  if (n <= 0) return _mm256_setzero_si256();
  return _mm256_maskz_loadu_epi16(mask16(n), p);
}
// 32 consecutive values (n valid) as bfloat16: lane q (32-bit) = the pair (2q, 2q+1).
inline __m512i load32(const float* p, int n) {
  if (n <= 0) return _mm512_setzero_si512();
  const __m512 lo = _mm512_maskz_loadu_ps(mask16(n), p);
  const __m512 hi = n > 16 ? _mm512_maskz_loadu_ps(mask16(n - 16), p + 16) : _mm512_setzero_ps();
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}
inline __m512i load32(const uint16_t* p, int n) {
  if (n <= 0) return _mm512_setzero_si512();
  return _mm512_maskz_loadu_epi16(mask32(n), p);
}

// Two rows of 16 (n valid; r1 may be null: zero) as one zmm of bf16: words 0-15 from r0, 16-31 from r1.
inline __m512i two_rows(const float* r0, const float* r1, int n) {
  const __mmask16 m = mask16(n);
  const __m512 lo = _mm512_maskz_loadu_ps(m, r0);
  const __m512 hi = r1 != nullptr ? _mm512_maskz_loadu_ps(m, r1) : _mm512_setzero_ps();
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}
inline __m512i two_rows(const uint16_t* r0, const uint16_t* r1, int n) {
  const __m256i hi = r1 != nullptr ? load16(r1, n) : _mm256_setzero_si256();
  return _mm512_inserti64x4(_mm512_castsi256_si512(load16(r0, n)), hi, 1);
}

// Words 0-15 and 16-31 of z interleaved: 32-bit lane j = (z[j], z[16 + j]).
inline __m512i interleave(__m512i z) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                       5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, z);
}


// X points at element (k0, j0) of a matrix whose element (k, j) is X[k*ld + j] (cj: contiguous in j) or
// X[j*ld + k]. Reads rows k < nk (<= 32) and columns j < nj (<= 16) only; the rest is zero.
// pairs_pj: out[p] lane j = pair (2p, 2p+1) of column j.   pairs_jp: out[j] lane p = the same pair.
template <typename S>
inline void pairs_pj(const S* X, int64_t ld, bool cj, int nk, int nj, __m512i out[16]) {
  if (cj) {
    for (int p = 0; p < 16; ++p) {
      if (2 * p >= nk) {
        out[p] = _mm512_setzero_si512();
        continue;
      }
      out[p] = interleave(two_rows(X + 2 * p * ld, 2 * p + 1 < nk ? X + (2 * p + 1) * ld : nullptr, nj));
    }
  } else {
    for (int j = 0; j < 16; ++j) out[j] = j < nj ? load32(X + j * ld, nk) : _mm512_setzero_si512();
    transpose16(out);
  }
}
template <typename S>
inline void pairs_jp(const S* X, int64_t ld, bool cj, int nk, int nj, __m512i out[16]) {
  if (cj) {
    pairs_pj(X, ld, cj, nk, nj, out);
    transpose16(out);
  } else {
    for (int j = 0; j < 16; ++j) out[j] = j < nj ? load32(X + j * ld, nk) : _mm512_setzero_si512();
  }
}

// Pointer to element (i, k) of op(A) / (k, j) of op(B).
template <typename S>
inline const S* at_a(bool trans, const S* A, int64_t lda, int64_t i, int64_t k) {
  return trans ? A + k * lda + i : A + i * lda + k;
}
template <typename S>
inline const S* at_b(bool trans, const S* B, int64_t ldb, int64_t k, int64_t j) {
  return trans ? B + j * ldb + k : B + k * ldb + j;
}

// ---------------------------------------------------------------- AVX512_BF16 layout (MR = 14, NR = 32, ku = 2)

constexpr int kMR = 14, kNR = 32;

// Calls tile(ir, k0, nk) for every panel of mr rows x 32 values of k of op(A)'s rows [0, mc), cols [0, kc).
// Transposed A (rows of op(A) contiguous across i) is walked k outer, so each source row is one sequential run
// across all mc values; otherwise panel outer, k inner (each of the panel's rows a sequential run).
template <typename F>
inline void for_each_a_block(bool trans, int64_t mc, int64_t kc, int mr, F&& tile) {
  if (trans) {
    for (int64_t k0 = 0; k0 < kc; k0 += 32)
      for (int64_t ir = 0; ir < mc; ir += mr) tile(ir, k0, static_cast<int>(std::min<int64_t>(32, kc - k0)));
  } else {
    for (int64_t ir = 0; ir < mc; ir += mr)
      for (int64_t k0 = 0; k0 < kc; k0 += 32) tile(ir, k0, static_cast<int>(std::min<int64_t>(32, kc - k0)));
  }
}

template <typename S>
void pack_a_avx(bool trans, const S* A, int64_t lda, int64_t mc, int64_t kc, uint16_t* dst) {
  const int64_t kcp = (kc + 1) / 2 * 2;
  for_each_a_block(trans, mc, kc, kMR, [&](int64_t ir, int64_t k0, int nk) {
    const int nj = static_cast<int>(std::min<int64_t>(kMR, mc - ir));
    uint16_t* d = dst + ir * kcp;
    __m512i r[16];
    pairs_pj(at_a(trans, A, lda, ir, k0), lda, trans, nk, nj, r);
    for (int p = 0; p < (nk + 1) / 2; ++p) _mm512_mask_storeu_epi32(d + (k0 / 2 + p) * 2 * kMR, mask16(kMR), r[p]);
  });
}

// Calls tile(j, k0, nk, nj) for every 16-column x 32-k block of op(B)'s columns [0, nc), rows [0, kc) (nj <= 0:
// a block past the last column of a 32-column panel, to be zero filled). Non-transposed B is walked 32 rows at a
// time across all nc columns, so each source row is one long sequential run the hardware prefetchers follow (runs
// of 512 bytes, four panels, measured 15% slower on M = 64, N = 3136, K = 576, where packing B is most of the
// time); transposed B (columns contiguous) one panel at a time, k inner.
template <typename F>
inline void for_each_b_block(bool trans, int64_t nc, int64_t kc, F&& tile) {
  const int64_t group = trans ? 32 : std::max<int64_t>(32, (nc + 31) / 32 * 32);
  for (int64_t j0 = 0; j0 < nc; j0 += group) {
    const int64_t jend = std::min(j0 + group, (nc + 31) / 32 * 32);
    for (int64_t k0 = 0; k0 < kc; k0 += 32) {
      const int nk = static_cast<int>(std::min<int64_t>(32, kc - k0));
      for (int64_t j = j0; j < jend; j += 16) tile(j, k0, nk, static_cast<int>(std::min<int64_t>(16, nc - j)));
    }
  }
}

template <typename S>
void pack_b_avx(bool trans, const S* B, int64_t ldb, int64_t nc, int64_t kc, uint16_t* dst) {
  const int64_t kcp = (kc + 1) / 2 * 2;
  for_each_b_block(trans, nc, kc, [&](int64_t j, int64_t k0, int nk, int nj) {
    uint16_t* d = dst + j / 32 * 32 * kcp + (j % 32) * 2;
    __m512i r[16];
    if (nj > 0)
      pairs_pj(at_b(trans, B, ldb, k0, j), ldb, !trans, nk, nj, r);
    else
      for (int p = 0; p < 16; ++p) r[p] = _mm512_setzero_si512();
    for (int p = 0; p < (nk + 1) / 2; ++p) _mm512_store_si512(d + (k0 / 2 + p) * 2 * kNR, r[p]);
  });
}

// C rows [0, mr) x columns [0, nr) of the register block = alpha * acc + beta * C.
template <int NV, int R>
inline void store_rows(const __m512 (&acc)[R][2], int64_t mr, int64_t nr, float* c, int64_t ldc, float alpha,
                       float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int i = 0; i < R; ++i) {
    if (i >= mr) break;
    float* cr = c + i * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = mask16(static_cast<int>(nr - 16 * v));
      __m512 r = _mm512_mul_ps(acc[i][v], va);
      if (beta != 0.0f) r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, cr + 16 * v), vb, r);
      _mm512_mask_storeu_ps(cr + 16 * v, m, r);
    }
  }
}

// R: the rows computed, of the kMR-row panel (the last panel of a product whose M is not a multiple of kMR holds
// fewer: ResNet's 64-row layers end in a panel of 8, which at R = kMR cost as much as a full one).
template <int NV, int R>
void ukr_avx_nv(int64_t mr, int64_t nr, int64_t kcp, const uint16_t* __restrict a, const uint16_t* __restrict b,
                float* c, int64_t ldc, float alpha, float beta) {
  __m512 acc[R][2];
#pragma GCC unroll 14
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) acc[i][v] = _mm512_setzero_ps();
  const int64_t np = kcp / 2;
#pragma GCC unroll 2
  for (int64_t p = 0; p < np; ++p) {
    __m512bh bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 16 * 2 * v));
#pragma GCC unroll 14
    for (int i = 0; i < R; ++i) {
      int32_t pair;
      std::memcpy(&pair, a + 2 * i, 4);
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
    }
    a += 2 * kMR;
    b += 2 * kNR;
  }
  store_rows<NV, R>(acc, mr, nr, c, ldc, alpha, beta);
}

template <int NV>
void ukr_avx_rows(int64_t mr, int64_t nr, int64_t kcp, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                  float alpha, float beta) {
  if (mr <= 4)
    ukr_avx_nv<NV, 4>(mr, nr, kcp, a, b, c, ldc, alpha, beta);
  else if (mr <= 8)
    ukr_avx_nv<NV, 8>(mr, nr, kcp, a, b, c, ldc, alpha, beta);
  else
    ukr_avx_nv<NV, kMR>(mr, nr, kcp, a, b, c, ldc, alpha, beta);
}

void ukr_avx(int64_t mr, int64_t nr, int64_t kcp, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
             float alpha, float beta, float* /*acc*/, bool first, bool /*last*/) {
  if (!first) beta = 1.0f;
  if (nr <= 16)
    ukr_avx_rows<1>(mr, nr, kcp, a, b, c, ldc, alpha, beta);
  else
    ukr_avx_rows<2>(mr, nr, kcp, a, b, c, ldc, alpha, beta);
}

// ---------------------------------------------------------------- AMX layout (MR = NR = 32, ku = 32)

template <typename S>
void pack_a_amx(bool trans, const S* A, int64_t lda, int64_t mc, int64_t kc, uint16_t* dst) {
  const int64_t kcp = (kc + 31) / 32 * 32;
  for_each_a_block(trans, mc, kc, 32, [&](int64_t ir, int64_t k0, int nk) {
    for (int h = 0; h < 2; ++h) {
      const int nj = static_cast<int>(std::min<int64_t>(16, mc - ir - 16 * h));
      uint16_t* dt = dst + ir * kcp + k0 * 32 + h * 512;
      if (nj <= 0) {
        for (int j = 0; j < 16; ++j) _mm512_store_si512(dt + 32 * j, _mm512_setzero_si512());
        continue;
      }
      __m512i r[16];
      pairs_jp(at_a(trans, A, lda, ir + 16 * h, k0), lda, trans, nk, nj, r);
      for (int j = 0; j < 16; ++j) _mm512_store_si512(dt + 32 * j, r[j]);
    }
  });
}

// pairs_pj of a B given by row pointers: row k0 + r of the block starts at rows[r] + j (see RowsB).
inline void pairs_pj_rows(const uint16_t* const* rows, int64_t j, int nk, int nj, __m512i out[16]) {
  for (int p = 0; p < 16; ++p)
    out[p] = 2 * p >= nk ? _mm512_setzero_si512()
                         : interleave(two_rows(rows[2 * p] + j, 2 * p + 1 < nk ? rows[2 * p + 1] + j : nullptr, nj));
}

template <typename S>
void pack_b_amx(bool trans, const S* B, int64_t ldb, int64_t nc, int64_t kc, uint16_t* dst) {
  const int64_t kcp = (kc + 31) / 32 * 32;
  for_each_b_block(trans, nc, kc, [&](int64_t j, int64_t k0, int nk, int nj) {
    uint16_t* dt = dst + j / 32 * 32 * kcp + k0 * 32 + (j % 32) / 16 * 512;
    if (nj <= 0) {
      for (int p = 0; p < 16; ++p) _mm512_store_si512(dt + 32 * p, _mm512_setzero_si512());
      return;
    }
    __m512i r[16];
    pairs_pj(at_b(trans, B, ldb, k0, j), ldb, !trans, nk, nj, r);
    for (int p = 0; p < 16; ++p) _mm512_store_si512(dt + 32 * p, r[p]);
  });
}

// Row-pointer B (op(B) row k = rows[k] + col, contiguous): the same layouts as pack_b_avx / pack_b_amx.
void pack_b_rows_avx(const uint16_t* const* rows, int64_t col, int64_t nc, int64_t kc, uint16_t* dst) {
  const int64_t kcp = (kc + 1) / 2 * 2;
  for_each_b_block(false, nc, kc, [&](int64_t j, int64_t k0, int nk, int nj) {
    uint16_t* d = dst + j / 32 * 32 * kcp + (j % 32) * 2;
    __m512i r[16];
    if (nj > 0)
      pairs_pj_rows(rows + k0, col + j, nk, nj, r);
    else
      for (int p = 0; p < 16; ++p) r[p] = _mm512_setzero_si512();
    for (int p = 0; p < (nk + 1) / 2; ++p) _mm512_store_si512(d + (k0 / 2 + p) * 2 * kNR, r[p]);
  });
}

void pack_b_rows_amx(const uint16_t* const* rows, int64_t col, int64_t nc, int64_t kc, uint16_t* dst) {
  const int64_t kcp = (kc + 31) / 32 * 32;
  for_each_b_block(false, nc, kc, [&](int64_t j, int64_t k0, int nk, int nj) {
    uint16_t* dt = dst + j / 32 * 32 * kcp + k0 * 32 + (j % 32) / 16 * 512;
    if (nj <= 0) {
      for (int p = 0; p < 16; ++p) _mm512_store_si512(dt + 32 * p, _mm512_setzero_si512());
      return;
    }
    __m512i r[16];
    pairs_pj_rows(rows + k0, col + j, nk, nj, r);
    for (int p = 0; p < 16; ++p) _mm512_store_si512(dt + 32 * p, r[p]);
  });
}

}  // namespace

void bf16_avx512_kernel(Bf16Kernel* k) {
  k->mr = kMR;
  k->nr = kNR;
  k->ku = 2;
  k->pack_a_f32 = &pack_a_avx<float>;
  k->pack_a_b16 = &pack_a_avx<uint16_t>;
  k->pack_b_f32 = &pack_b_avx<float>;
  k->pack_b_b16 = &pack_b_avx<uint16_t>;
  k->pack_b_rows = &pack_b_rows_avx;
  k->ukr = &ukr_avx;
}

void bf16_amx_packing(Bf16Kernel* k) {
  k->mr = 32;
  k->nr = 32;
  k->ku = 32;
  k->pack_a_f32 = &pack_a_amx<float>;
  k->pack_a_b16 = &pack_a_amx<uint16_t>;
  k->pack_b_f32 = &pack_b_amx<float>;
  k->pack_b_b16 = &pack_b_amx<uint16_t>;
  k->pack_b_rows = &pack_b_rows_amx;
}

// 16 independent accumulators (more than latency x throughput of vdpbf16ps), registers only.
double bf16_avx512_peak_loop(double seconds, double* flops) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh x = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x3F803F80));  // (1, 1)
  const __m512bh y = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x34003400));  // (2^-23, 2^-23)
  constexpr int64_t kIter = 1 << 16;
  const auto t0 = std::chrono::steady_clock::now();
  double el = 0.0;
  int64_t reps = 0;
  do {
    for (int64_t r = 0; r < kIter; ++r) {
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
    }
    ++reps;
    el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (el < seconds);
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  *flops = static_cast<double>(reps) * kIter * 16 * 64.0;
  return el;
}

}  // namespace dl::cpu::detail

#endif
