// Winograd F(m x m, 3 x 3) (Lavin & Gray, 2016) for m = 2 and m = 4. With a = m + 2, d an a x a
// input tile, g a 3x3 kernel and the matrices B^T (a x a), G (a x 3), A^T (m x a) of struct F below,
// the m x m output tile is Y = A^T [(G g G^T) .* (B^T d B)] A. Summed over input channels, the
// elementwise product becomes, for each of the a*a positions xi, a matrix product over channels:
//   M_xi (T, K) = V_xi (T, C) @ U_xi (C, K),   V = B^T d B per tile, U = G g G^T per kernel,
// T a block of tiles. Tile (ty, tx) covers output rows m ty ... m ty + m - 1 and input rows
// m ty - pad ... + a - 1; taps outside the image read zero, outputs past the plane's edge are dropped.
//
// F(2x2) does 16 multiplications per 4 outputs (2.25x fewer than the 36 of the definition), F(4x4)
// 36 per 16 (4x fewer), at the price of larger transforms and a larger rounding error (its matrices
// hold 1/15, 16/15, 8 and 1/8): tests/unit/fast_kernels_test.cpp bounds both against the definition.
//
// Layout (the oneDNN way, channels innermost): each thread copies its images to channels-last, then runs
// blocks of tiles through input transform, a*a GEMMs and output transform while the block's V and M
// (ConvTuning::winograd_block_bytes, a share of L2) stay in cache, and copies the outputs back to planes.
// Every transform loop runs over the channels (long, unit stride: they vectorise), and the GEMMs read the
// transformed kernels from panels they are transformed into once per call (gemm_packed_b_layout,
// gemm_prepacked_b), packing only the block's V (the weight gradient split by images writes its V packed too).
// Measured on the 2-core AVX2 Zen 3 guest against the previous form (planes, one GEMM over a chunk of images per
// position, U repacked in every GEMM), F(2x2), three paired rounds (bench_records/2026-12-03T1800Z-winograd-zen3):
// ResNet18's 3x3 layers at 224, batch 32: 64x56x56 1.20-2.23x, 128x28x28 1.40-2.03x, 256x14x14 0.87-1.58x,
// 512x7x7 0.72-0.84x (there the search kept the direct convolution); F(4x4) over F(2x2): 1.32-1.55x, 1.32-1.46x,
// 0.78-0.94x, 0.89-0.98x. Since the kernels' transform writes the packed panels (it had been a quarter of a
// 512-channel forward), on the AVX2 Zen 4 guest 512x7x7 ran 1.13-1.21x the direct convolution and 256x14x14
// 1.5-1.7x (bench_records/2026-12-04T1340Z-winograd-packed-kernels-zen4).
#include "tensor/cpu/winograd.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor/cpu/conv.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/scratch.h"

#include <omp.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "tensor/cpu/avx2_transpose.h"
#endif

namespace dl::cpu {
namespace {

template <int m>
struct F;
template <>
struct F<2> {
  static constexpr int a = 4, step = 2;  // a x a input tiles, step apart
  static constexpr double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
template <>
struct F<4> {
  // Interpolation points 0, 1, -1, 2, -1/2 and infinity (Barabasz, Anderson, Soodhalter & Gregg, "Error analysis
  // and improving the accuracy of Winograd convolution", 2020): in a float32 simulation of 512-channel sums
  // their largest error was a third of that of Lavin's 0, +-1, +-2 (2.4e-6 against 7.4e-6 of the largest
  // output; F(2x2): 0.8e-6). Derived by the Toom-Cook construction; A^T (G g .* B^T d) is the correlation, checked in rationals.
  static constexpr int a = 6, step = 4;
  static constexpr double BT[6][6] = {{1, 1.5, -2, -1.5, 1, 0},    {0, -1, -2.5, -0.5, 1, 0}, {0, 1, 0.5, -2.5, 1, 0},
                                      {0, -0.5, -1, 0.5, 1, 0},    {0, 2, -1, -2, 1, 0},     {0, 1, 1.5, -2, -1.5, 1}};
  static constexpr double G[6][3] = {{1, 0, 0},
                                     {-1.0 / 3, -1.0 / 3, -1.0 / 3},
                                     {1.0 / 3, -1.0 / 3, 1.0 / 3},
                                     {1.0 / 15, 2.0 / 15, 4.0 / 15},
                                     {-16.0 / 15, 8.0 / 15, -4.0 / 15},
                                     {0, 0, 1}};
  static constexpr double AT[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -0.5, 0}, {0, 1, 1, 4, 0.25, 0}, {0, 1, -1, 8, -0.125, 1}};
};

// The weight gradient's F(3x3, 2x2), points 0, 1, -1 and infinity: dW (3x3) of a layer = the sum over the 2x2 tiles
// of its output gradient g, each against the 4x4 input tile d under it, of A^T [(G g G^T) .* (B^T d B)] A (the
// correlation Y[i][j] = sum_kl g[k][l] d[k + i][l + j]): 16 products per tile and channel pair instead of 36.
// Derived by the Toom-Cook construction like F<4>, checked in rationals.
struct FW {
  static constexpr int a = 4, step = 2;
  static constexpr double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}};
  static constexpr double G[4][2] = {{1, 0}, {0.5, 0.5}, {0.5, -0.5}, {0, 1}};
  static constexpr double AT[3][4] = {{1, 1, 1, 0}, {0, 1, -1, 0}, {0, 1, 1, 1}};
};

// sum_j Mat[r][j] * p[j][i], j < n, unrolled at compile time: zero coefficients are left out, +-1 not multiplied
// (a multiplication by a literal 0 could not be dropped by the compiler: 0 * inf is NaN). No lambdas: closures
// made inside `omp simd` loops kept GCC from vectorising them.
template <typename T, const auto& Mat, int r, int n, int j = 0, bool started = false>
inline T dot_row(const T* const* p, int64_t i, T acc = T(0)) {
  if constexpr (j == n) {
    return acc;
  } else {
    constexpr double c = Mat[r][j];
    if constexpr (c == 0) {
      return dot_row<T, Mat, r, n, j + 1, started>(p, i, acc);
    } else {
      const T v = p[j][i];
      T next;
      if constexpr (!started)
        next = c == 1 ? v : c == -1 ? -v : T(c) * v;
      else
        next = c == 1 ? acc + v : c == -1 ? acc - v : acc + T(c) * v;
      return dot_row<T, Mat, r, n, j + 1, true>(p, i, next);
    }
  }
}

template <int N, typename Fn>
[[gnu::always_inline]] inline void static_for(Fn&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) __attribute__((always_inline)) {
    (f(std::integral_constant<int, I>{}), ...);
  }(
      std::make_integer_sequence<int, N>{});
}

// One stage of a transform, over runs of n channels: out[i][c] = sum_j Mat[i][j] in[j][c] for the rows i < Rows
// (Cols = Mat's columns).
template <typename T, const auto& Mat, int Rows, int Cols>
[[gnu::always_inline]] inline void apply_rows(const T* const* in, T* const* out, int64_t n) {
  static_for<Rows>([&](auto ii) __attribute__((always_inline)) {
    constexpr int i = decltype(ii)::value;
    T* o = out[i];
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) o[c] = dot_row<T, Mat, i, Cols>(in, c);
  });
}

// scratch slots (tensor/cpu/scratch.h): conv.cpp uses 0-2 on the same threads, at other times
enum Slot { kBlock = 0, kImage = 1, kTap = 3, kPackedU = 15, kWeightSums = 16 };

// Rows [c0, c1) of transpose (below) by the loops: 8 source rows a pass, 8 input streams, 8 consecutive values
// written; columns from p0.
template <typename T>
void transpose_rows(const T* src, int64_t C, int64_t P, int64_t c0, int64_t c1, int64_t p0, T* dst) {
  constexpr int64_t kc = 8;
  for (int64_t cb = c0; cb < c1; cb += kc) {
    const int64_t cn = std::min(kc, c1 - cb);
    for (int64_t p = p0; p < P; ++p)
      for (int64_t c = 0; c < cn; ++c) dst[p * C + cb + c] = src[(cb + c) * P + p];
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// float on AVX2: 8 x 8 blocks through the registers (8 loads, transpose8, 8 stores), the edges by the loops. The
// loops took 14% of Winograd's forward on ResNet18's 64x16x16 -> 64 layer (perf, AVX2 Zen 4 guest, 2 threads).
__attribute__((target("avx2,fma"))) void transpose_avx2(const float* src, int64_t C, int64_t P, float* dst) {
  const int64_t C8 = C / 8 * 8, P8 = P / 8 * 8;
  for (int64_t c0 = 0; c0 < C8; c0 += 8) {
    for (int64_t p0 = 0; p0 < P8; p0 += 8) {
      const float* s = src + c0 * P + p0;
      __m256 r[8];
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(s + q * P);
      detail::transpose8(r);
      float* d = dst + p0 * C + c0;
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) _mm256_storeu_ps(d + q * C, r[q]);
    }
  }
  transpose_rows(src, C, P, 0, C8, P8, dst);  // the columns past the last block of 8
  transpose_rows(src, C, P, C8, C, 0, dst);   // the rows past the last block of 8
}
#endif

// dst (P x C) = the transpose of src (C x P): an image's C planes of P values to channels-last (P rows of C), or,
// called with the two sizes swapped, back. In float on AVX2 CPUs (with ConvTuning::winograd_avx2) by registers.
template <typename T>
void transpose(const T* src, int64_t C, int64_t P, T* dst) {
#if defined(__x86_64__) && defined(__GNUC__)
  if constexpr (std::is_same_v<T, float>)
    if (conv_tuning().winograd_avx2 && cpu_has_avx2()) {
      transpose_avx2(src, C, P, dst);
      return;
    }
#endif
  transpose_rows(src, C, P, 0, C, 0, dst);
}

struct Tiles {
  int64_t C, H, W, K, pad, Ho, Wo, th, tw;
  int64_t per_image() const { return th * tw; }
};

// V[xi * ld + t][c] (xi < a*a; t < tn; ld >= tn, the tiles a block's V holds) for tiles t0 ... t0 + tn - 1 of a
// chunk of images, tile q of the chunk being tile q % P of image q / P, xc their channels-last copies; every loop
// runs over the channels. zero: C zeros; tmp: a*a*C values. With nr > 0, each matrix V[xi] (ld x C) in the GEMMs'
// packed layout of a B operand instead (gemm_packed_b_layout: panels of nr channels, panel p at p * nr * ld, row
// t at + t * nr; matrix xi at xi * ld * Cp, Cp = C rounded up to nr; the last panel's columns past C zero), so that
// a GEMM reads it without packing it.
template <class Fm, typename T>
[[gnu::always_inline]] inline void input_transform(const T* xc, const Tiles& g, int64_t t0, int64_t tn, int64_t ld, T* V,
                                                   const T* zero, T* tmp, int64_t nr) {
  constexpr int a = Fm::a, m = Fm::step;
  const int64_t C = g.C, P = g.per_image();
  for (int64_t t = 0; t < tn; ++t) {
    const int64_t q = (t0 + t) % P, ty = q / g.tw, tx = q % g.tw;
    const T* x = xc + (t0 + t) / P * g.H * g.W * C;
    const T* d[a][a];  // the tile's input rows of channels (or zeros outside the image)
    for (int r = 0; r < a; ++r) {
      const int64_t ih = m * ty - g.pad + r;
      for (int s2 = 0; s2 < a; ++s2) {
        const int64_t iw = m * tx - g.pad + s2;
        d[r][s2] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? x + (ih * g.W + iw) * C : zero;
      }
    }
    // B^T down the columns: tmp[k][s] = sum_r BT[k][r] d[r][s]
    for (int s2 = 0; s2 < a; ++s2) {
      const T* col[a];
      T* o[a];
      for (int r = 0; r < a; ++r) col[r] = d[r][s2], o[r] = tmp + (r * a + s2) * C;
      apply_rows<T, Fm::BT, a, a>(col, o, C);
    }
    // B along the rows: V[a k + j][t] = sum_s BT[j][s] tmp[k][s]
    for (int k = 0; k < a; ++k) {
      const T* row[a];
      T* v[a];
      if (nr == 0) {
        for (int j = 0; j < a; ++j) row[j] = tmp + (k * a + j) * C, v[j] = V + ((a * k + j) * ld + t) * C;
        apply_rows<T, Fm::BT, a, a>(row, v, C);
        continue;
      }
      const int64_t matrix = ld * ((C + nr - 1) / nr * nr);
      for (int64_t c0 = 0; c0 < C; c0 += nr) {
        const int64_t n = std::min(nr, C - c0);
        for (int j = 0; j < a; ++j) {
          row[j] = tmp + (k * a + j) * C + c0, v[j] = V + (a * k + j) * matrix + c0 * ld + t * nr;
          std::fill(v[j] + n, v[j] + nr, T(0));  // (C not a multiple of nr: the last panel's columns past C)
        }
        apply_rows<T, Fm::BT, a, a>(row, v, n);
      }
    }
  }
}

// The outputs of tiles t0 ... t0 + tn - 1 of a chunk (as above) from M[xi][t][k] (ld K, t < tn), into the
// channels-last outputs yc (images of Ho x Wo x K), plus bias (K zeros where none); tmp: m*a*K values.
template <int m, typename T>
[[gnu::always_inline]] inline void output_transform(const T* M, const Tiles& g, int64_t t0, int64_t tn, const T* bias, T* yc, T* tmp) {
  using Fm = F<m>;
  constexpr int a = Fm::a;
  const int64_t K = g.K, P = g.per_image();
  for (int64_t t = 0; t < tn; ++t) {
    const int64_t q = (t0 + t) % P, ty = q / g.tw, tx = q % g.tw;
    T* yi = yc + (t0 + t) / P * g.Ho * g.Wo * K;
    // A^T down the columns: u[i][j] = sum_r AT[i][r] M[a r + j]
    for (int j = 0; j < a; ++j) {
      const T* col[a];
      T* u[m];
      for (int r = 0; r < a; ++r) col[r] = M + ((a * r + j) * tn + t) * K;
      for (int i = 0; i < m; ++i) u[i] = tmp + (i * a + j) * K;
      apply_rows<T, Fm::AT, m, a>(col, u, K);
    }
    // A along the rows: y[i][jj] = sum_j AT[jj][j] u[i][j], for the outputs inside the plane
    for (int i = 0; i < m; ++i) {
      const int64_t oh = m * ty + i;
      if (oh >= g.Ho) break;
      const T* row[a];
      for (int j = 0; j < a; ++j) row[j] = tmp + (i * a + j) * K;
      static_for<m>([&](auto jj) {
        constexpr int j = decltype(jj)::value;
        const int64_t ow = m * tx + j;
        if (ow >= g.Wo) return;
        T* y = yi + (oh * g.Wo + ow) * K;
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) y[k] = dot_row<T, Fm::AT, j, a>(row, k) + bias[k];
      });
    }
  }
}

// The weight gradient's second operand: U[xi * ld + t][o] = (G g G^T)[xi] for the 2x2 tiles g of the output
// gradients gc (channels-last images of Ho x Wo x K, tiles and ld as in input_transform; zero past the plane's
// edge); tmp: 8*K values.
template <typename T>
[[gnu::always_inline]] inline void gout_transform(const T* gc, const Tiles& g, int64_t t0, int64_t tn, int64_t ld, T* U,
                                                  const T* zero, T* tmp) {
  constexpr int a = FW::a;
  const int64_t K = g.K, P = g.per_image();
  for (int64_t t = 0; t < tn; ++t) {
    const int64_t q = (t0 + t) % P, ty = q / g.tw, tx = q % g.tw;
    const T* gi = gc + (t0 + t) / P * g.Ho * g.Wo * K;
    const T* d[2][2];
    for (int k = 0; k < 2; ++k)
      for (int l = 0; l < 2; ++l) {
        const int64_t oh = 2 * ty + k, ow = 2 * tx + l;
        d[k][l] = oh < g.Ho && ow < g.Wo ? gi + (oh * g.Wo + ow) * K : zero;
      }
    // G down the columns: tmp[i][l] = sum_k G[i][k] g[k][l]
    for (int l = 0; l < 2; ++l) {
      const T* col[2] = {d[0][l], d[1][l]};
      T* o[a];
      for (int i = 0; i < a; ++i) o[i] = tmp + (i * 2 + l) * K;
      apply_rows<T, FW::G, a, 2>(col, o, K);
    }
    // G along the rows: U[a i + j] = sum_l G[j][l] tmp[i][l]
    for (int i = 0; i < a; ++i) {
      const T* row[2] = {tmp + (i * 2) * K, tmp + (i * 2 + 1) * K};
      T* u[a];
      for (int j = 0; j < a; ++j) u[j] = U + ((a * i + j) * ld + t) * K;
      apply_rows<T, FW::G, a, 2>(row, u, K);
    }
  }
}

// dW (O, C, 3, 3) from the summed M[xi][o][c] (xi < 16): A^T M A for each (o, c), o in [o0, o1); tmp: 15*C values.
template <typename T>
[[gnu::always_inline]] inline void weight_output_transform(const T* M, int64_t O, int64_t C, int64_t o0, int64_t o1, T* gw,
                                                           T* tmp) {
  constexpr int a = FW::a;
  for (int64_t o = o0; o < o1; ++o) {
    T* u = tmp;  // u[i][j] (i < 3, j < 4) over the channels: A^T down the columns
    for (int j = 0; j < a; ++j) {
      const T* col[a];
      T* ui[3];
      for (int r = 0; r < a; ++r) col[r] = M + ((a * r + j) * O + o) * C;
      for (int i = 0; i < 3; ++i) ui[i] = u + (i * a + j) * C;
      apply_rows<T, FW::AT, 3, a>(col, ui, C);
    }
    for (int i = 0; i < 3; ++i) {  // A along the rows, then into gw[o][c][i][j]
      const T* row[a];
      T* y[3] = {tmp + 12 * C, tmp + 13 * C, tmp + 14 * C};
      for (int j = 0; j < a; ++j) row[j] = u + (i * a + j) * C;
      apply_rows<T, FW::AT, 3, a>(row, y, C);
      for (int j = 0; j < 3; ++j) {
        T* w = gw + o * C * 9 + i * 3 + j;
        for (int64_t c = 0; c < C; ++c) w[c * 9] = y[j][c];
      }
    }
  }
}

// The transforms compiled twice, for baseline x86-64 (4-wide SSE) and for AVX2 + FMA (the bodies above, always_inline,
// are inlined into each); pick() takes the latter where the CPU has AVX2 and FMA and ConvTuning::winograd_avx2
// allows (the baseline's vectors left the transforms a third of a block's time on ResNet18's 64-channel layers).
// pack_weight_panel below is not always_inline and GCC does not inline it, so both of its picks call its baseline
// build; made always_inline, its AVX2 build measured 0.96-1.0x on ResNet18's 64- to 256-channel layers (Zen 4 guest).
template <auto Body>
struct Build;
template <typename... A, void (*Body)(A...)>
struct Build<Body> {
  static void base(A... a) { Body(a...); }
#if defined(__x86_64__) && defined(__GNUC__)
  __attribute__((target("avx2,fma"))) static void avx2(A... a) { Body(a...); }
#endif
  static void (*pick())(A...) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (conv_tuning().winograd_avx2 && cpu_has_avx2()) return avx2;
#endif
    return base;
  }
};

// Panel p (output channels [p nr, p nr + nr)), rows [r0, r1) (input channels) of the a*a transformed kernels
// G g G^T, written straight into the GEMMs' packed panels (gemm_packed_b_layout: Ub[xi] holds the Cin x Kout
// matrix xi, row r of panel p at Ub[xi].panels + (p * Cin + r) * nr). The kernel of input channel r and output
// channel q is w (Kout, Cin, 3, 3) at (q, r), or with flip_transpose (the input gradient's) w (Cin, Kout, 3, 3) at
// (r, q) rotated by 180 degrees. Row by row, a panel's nr kernels at a time: their taps gathered into rows, G down
// and along them by apply_rows, so that each of the a*a matrices is written along its panel. One kernel at a time
// into unpacked matrices (a*a scalar stores into lines 4*Cin*Kout bytes apart, the same cache sets) and a packing
// pass after had taken 25% and 5% of a 512-channel forward at batch 32 on the Zen 4 guest.
template <int m, typename T>
void pack_weight_panel(const T* w, int64_t Cin, int64_t Kout, bool flip_transpose, const GemmPackedB<T>* Ub,
                       int64_t p, int64_t r0, int64_t r1) {
  using Fm = F<m>;
  constexpr int a = Fm::a;
  constexpr int64_t kMaxNr = 64;
  const int64_t nr = Ub[0].nr, q0 = p * nr, n = std::min(nr, Kout - q0), rn = r1 - r0;
  // The taps of the rows and the panel's kernels, taps[(r - r0) * 9 + t][q] (one kernel's 9 at a time had waited on
  // memory: runs of 36 bytes, 18 KB apart in a forward); each run of kernels read whole: rn of them for a
  // forward's output channel, n for an input gradient's row.
  T* taps = thread_scratch<T>(kTap, static_cast<size_t>(rn * 9 * nr));
  if (flip_transpose) {
    for (int64_t i = 0; i < rn; ++i) {
      const T* k = w + ((r0 + i) * Kout + q0) * 9;
      for (int64_t q = 0; q < n; ++q)
        for (int t = 0; t < 9; ++t) taps[(i * 9 + t) * nr + q] = k[q * 9 + 8 - t];
    }
  } else {
    for (int64_t q = 0; q < n; ++q) {
      const T* k = w + ((q0 + q) * Cin + r0) * 9;
      for (int64_t i = 0; i < rn * 9; ++i) taps[i * nr + q] = k[i];
    }
  }
  alignas(64) T gg[a * 3][kMaxNr];
  for (int64_t r = r0; r < r1; ++r) {
    const T* g[9];
    for (int t = 0; t < 9; ++t) g[t] = taps + ((r - r0) * 9 + t) * nr;
    for (int j = 0; j < 3; ++j) {  // G down kernel column j: gg[i*3 + j] = sum_k G[i][k] g[k][j]
      const T* col[3] = {g[j], g[3 + j], g[6 + j]};
      T* out[a];
      for (int i = 0; i < a; ++i) out[i] = gg[i * 3 + j];
      apply_rows<T, Fm::G, a, 3>(col, out, n);
    }
    const int64_t at = (p * Cin + r) * nr;
    for (int i = 0; i < a; ++i) {  // G along row i, into the panel rows of matrices i*a + j
      const T* row[3] = {gg[i * 3], gg[i * 3 + 1], gg[i * 3 + 2]};
      T* out[a];
      for (int j = 0; j < a; ++j) {
        out[j] = const_cast<T*>(Ub[i * a + j].panels) + at;
        std::fill(out[j] + n, out[j] + nr, T(0));  // the last panel's columns past Kout
      }
      apply_rows<T, Fm::G, a, 3>(row, out, n);
    }
  }
}

// The a*a transformed kernels of a convolution with Cin input and Kout output channels (see pack_weight_panel),
// packed into dst (packed_weights_size values), Ub[xi] their layouts. The matrices lie a cache line more than
// their size apart: a multiple of 4 KiB apart, the a*a lines a panel row writes would share the cache sets. The
// threads split the panels' blocks of 32 rows.
template <typename T>
int64_t packed_matrix_stride(int64_t Cin, int64_t Kout) {
  return gemm_packed_b_size<T>(Cin, Kout) + 64 / static_cast<int64_t>(sizeof(T));
}
template <int m, typename T>
int64_t packed_weights_size(int64_t Cin, int64_t Kout) {
  return F<m>::a * F<m>::a * packed_matrix_stride<T>(Cin, Kout);
}
template <int m, typename T>
void pack_weights(const T* w, int64_t Cin, int64_t Kout, bool flip_transpose, T* dst, GemmPackedB<T>* Ub) {
  constexpr int a2 = F<m>::a * F<m>::a;
  constexpr int64_t kRows = 32;  // the taps of 32 rows and a panel: 18 KB for 16 columns, in L1
  const int64_t stride = packed_matrix_stride<T>(Cin, Kout);
  for (int xi = 0; xi < a2; ++xi) Ub[xi] = gemm_packed_b_layout(dst + xi * stride, Cin, Kout);
  if (Ub[0].nr > 64) throw std::logic_error("winograd: GEMM panels wider than 64 columns");
  const auto panel = Build<&pack_weight_panel<m, T>>::pick();
  const int64_t panels = (Kout + Ub[0].nr - 1) / Ub[0].nr, row_blocks = (Cin + kRows - 1) / kRows;
#pragma omp parallel for schedule(static) if (a2 * Cin * Kout > (1 << 16) && !omp_in_parallel())
  for (int64_t i = 0; i < panels * row_blocks; ++i) {
    const int64_t r0 = i % row_blocks * kRows;
    panel(w, Cin, Kout, flip_transpose, Ub, i / row_blocks, r0, std::min(Cin, r0 + kRows));
  }
}

inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float beta, float* c, int64_t ldc) {
  sgemm(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* a, int64_t lda, const double* b,
                 int64_t ldb, double beta, double* c, int64_t ldc) {
  dgemm(ta, tb, M, N, K, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// Tiles a block: about winograd_block_bytes of V and M together (a core's L2 share on the machines measured),
// at least 24 (the GEMMs' rows, 6 a micro-tile).
int64_t block_tiles(int64_t a2, int64_t C, int64_t K, int64_t elem) {
  const int64_t per_tile = a2 * (C + K) * elem;
  return std::max<int64_t>(conv_tuning().winograd_block_bytes / per_tile, 24);
}

// The forward's blocks: as block_tiles, but of at least kLargeWeightTiles tiles where the packed kernels take more
// than half of this CPU's share of L3. There the GEMMs read them from memory once a block: 16 MB for 512 channels,
// against the 24 tiles' 200 MFLOP, was the memory's bandwidth at the FMA peak (ResNet18's 512x7x7 forward at 224,
// Zen 4 guest: 96 tiles 1.10-1.15x 24; 256 channels, 4 MB, ran 0.95x with blocks longer than 24).
constexpr int64_t kLargeWeightTiles = 96;
int64_t forward_block_tiles(int64_t a2, int64_t C, int64_t K, int64_t elem) {
  const int64_t tiles = block_tiles(a2, C, K, elem);
  const int64_t share = cpu_caches().l3.per_cpu_or(int64_t{4} << 20);
  return a2 * C * K * elem > share / 2 ? std::max(tiles, kLargeWeightTiles) : tiles;
}

// Images a thread copies to channels-last at a time: enough for one block where an image has fewer tiles (P),
// at most the `avail` it has.
int64_t images_per_chunk(int64_t target, int64_t P, int64_t avail) {
  return std::clamp<int64_t>((target + P - 1) / P, 1, std::max<int64_t>(avail, 1));
}

// The forward's chunks: as above, but of up to mr - 1 more images where that makes the chunk's tiles (nearly)
// whole micro-tiles of the GEMMs' rows (mr). Its blocks span images, but not chunks: 512x7x7 at batch 32 took
// chunks of 2 images, 32 tiles, and a short micro-kernel for the last 2 rows of each, 7% of the time (perf, AVX2
// Zen 4 guest); 3 images are 48 tiles, 8 whole micro-tiles.
int64_t images_per_forward_chunk(int64_t target, int64_t P, int64_t avail, int64_t mr) {
  const auto short_rows = [&](int64_t nb) {  // the share of the last micro-tile's rows the chunk leaves empty
    const int64_t rows = nb * P;
    return static_cast<double>((rows + mr - 1) / mr * mr - rows) / static_cast<double>(rows);
  };
  const int64_t least = images_per_chunk(target, P, avail);
  int64_t best = least;
  for (int64_t nb = least; nb <= std::min(avail, least + mr - 1); ++nb) {
    if (short_rows(nb) <= 1.0 / 32) return nb;
    if (short_rows(nb) < short_rows(best)) best = nb;
  }
  return best;
}

template <int m, typename T>
void conv(T* out, const T* x, const T* w, bool flip_transpose, const T* bias, int64_t N, int64_t C, int64_t H,
          int64_t W, int64_t K, int64_t pad, const std::function<void(int64_t, int64_t)>& image_done) {
  constexpr int a = F<m>::a, a2 = a * a;
  Tiles g{C, H, W, K, pad, H + 2 * pad - 2, W + 2 * pad - 2, 0, 0};
  g.th = (g.Ho + m - 1) / m;
  g.tw = (g.Wo + m - 1) / m;
  const int64_t P = g.per_image(), HW = H * W, L = g.Ho * g.Wo;
  // the a*a transformed kernels (C x K each) packed once for the GEMMs' micro-kernel
  T* Up = thread_scratch<T>(kPackedU, static_cast<size_t>(packed_weights_size<m, T>(C, K)));
  GemmPackedB<T> Ub[a2];
  pack_weights<m>(w, C, K, flip_transpose, Up, Ub);
  const int64_t target = forward_block_tiles(a2, C, K, sizeof(T));
  const auto in_transform = Build<&input_transform<F<m>, T>>::pick();
  const auto out_transform = Build<&output_transform<m, T>>::pick();
  // Runs the tiles [t0, t1) of a chunk (tile q: tile q % P of image q / P) in blocks, on the calling thread:
  // transform, a*a GEMMs, inverse transform. xc: the chunk's channels-last images; yc: its outputs.
  // Blocks of (nearly) equal size, rounded up to whole micro-tiles of the GEMMs' rows (mr) so that at most the
  // last has a partial one: blocks of 32 tiles (64x16x16 -> 64) left 2 rows to a short micro-kernel twice an image,
  // 6% of the forward's time (perf, AVX2 Zen 4 guest).
  const int64_t mr = sgemm_blocks().mr;  // (the float and double kernels of each instruction set share their mr)
  auto run_tiles = [&](const T* xc, T* yc, int64_t t0, int64_t t1) {
    const int64_t blocks = (t1 - t0 + target - 1) / target;
    const int64_t Tb = std::min(t1 - t0, ((t1 - t0 + blocks - 1) / blocks + mr - 1) / mr * mr);
    T* block = thread_scratch<T>(kBlock, static_cast<size_t>(a2 * Tb * (C + K)));
    T* V = block;
    T* M = block + a2 * Tb * C;
    T* tmp = thread_scratch<T>(kTap, static_cast<size_t>(a2 * std::max(C, K) + C + K));
    T* zero = tmp + a2 * std::max(C, K);
    T* bias_k = zero + C;
    std::fill(zero, zero + C, T(0));
    for (int64_t k = 0; k < K; ++k) bias_k[k] = bias ? bias[k] : T(0);
    for (int64_t b0 = t0; b0 < t1; b0 += Tb) {
      const int64_t tn = std::min(Tb, t1 - b0);
      in_transform(xc, g, b0, tn, tn, V, zero, tmp, 0);
      for (int xi = 0; xi < a2; ++xi) gemm_prepacked_b(tn, V + xi * tn * C, C, Ub[xi], M + xi * tn * K, K);
      out_transform(M, g, b0, tn, bias_k, yc, tmp);
    }
  };
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (N >= nt) {  // the threads split the images; chunks of enough images for one block where planes are small
    parallel_shares(N, [&](int64_t n0, int64_t n1) {
      const int64_t nb = images_per_forward_chunk(target, P, n1 - n0, mr);
      T* xc = thread_scratch<T>(kImage, static_cast<size_t>(nb * (C * HW + K * L)));
      T* yc = xc + nb * C * HW;
      for (int64_t n = n0; n < n1; n += nb) {
        const int64_t cn = std::min(nb, n1 - n);
        for (int64_t i = 0; i < cn; ++i) transpose(x + (n + i) * C * HW, C, HW, xc + i * C * HW);
        run_tiles(xc, yc, 0, cn * P);
        for (int64_t i = 0; i < cn; ++i) transpose(yc + i * K * L, L, K, out + (n + i) * K * L);
        if (image_done) image_done(n, n + cn);
      }
    });
    return;
  }
  // fewer images than threads: one image at a time, its tiles split over the threads
  T* xc = thread_scratch<T>(kImage, static_cast<size_t>(C * HW + K * L));
  T* yc = xc + C * HW;
  for (int64_t n = 0; n < N; ++n) {
    transpose(x + n * C * HW, C, HW, xc);
    parallel_shares(P, [&](int64_t t0, int64_t t1) { run_tiles(xc, yc, t0, t1); });
    transpose(yc, L, K, out + n * K * L);
    if (image_done) image_done(n, n + 1);
  }
}

// The weight gradient's per-block work shared by both splits below. M[xi] (O, C) = (first) or += U[xi]^T V[xi]
// over a block's tn tiles, xi < a*a.
template <typename T>
void add_block_sums(const T* U, const T* V, int64_t O, int64_t C, int64_t tn, bool first, T* M) {
  constexpr int a2 = FW::a * FW::a;
  for (int xi = 0; xi < a2; ++xi)
    gemm(true, false, O, C, tn, U + xi * tn * O, O, V + xi * tn * C, C, first ? T(0) : T(1), M + xi * O * C, C);
}
// The transforms' scratch on the calling thread: a*a*max(C, O) values, then max(C, O) zeros (*zero).
template <typename T>
T* transform_scratch(int64_t C, int64_t O, T** zero) {
  constexpr int a2 = FW::a * FW::a;
  const int64_t m = std::max(C, O);
  T* tmp = thread_scratch<T>(kTap, static_cast<size_t>(a2 * m + m));
  *zero = tmp + a2 * m;
  std::fill(*zero, *zero + m, T(0));
  return tmp;
}

// The weight gradient's sums split by images: each thread sums its images' tiles into its own M (a*a, O, C); the
// partial sums are added at the end. Returns the sum (one thread's M).
template <typename T, typename InT, typename GT>
T* weight_sums_by_images(const T* x, const T* gout, int64_t N, const Tiles& g, int64_t target, InT in_transform,
                         GT g_transform) {
  constexpr int a2 = FW::a * FW::a;
  const int64_t C = g.C, O = g.K, P = g.per_image(), HW = g.H * g.W, L = g.Ho * g.Wo, MN = a2 * O * C;
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  std::vector<T*> partial(static_cast<size_t>(nt), nullptr);
  parallel_shares(N, [&](int64_t n0, int64_t n1) {
    const int tid = omp_in_parallel() ? omp_get_thread_num() : 0;
    T* M = thread_scratch<T>(kWeightSums, static_cast<size_t>(MN));
    partial[static_cast<size_t>(tid)] = M;
    const int64_t nb = images_per_chunk(target, P, n1 - n0);
    const int64_t Tb = std::min(target, nb * P);
    // V in the GEMMs' packed layout (input_transform), U as it is (op(A) = U^T, packed by the GEMM)
    const int64_t nr = gemm_packed_b_size<T>(1, 1), Cp = (C + nr - 1) / nr * nr;  // (one row: the panel width)
    T* block = thread_scratch<T>(kBlock, static_cast<size_t>(a2 * Tb * (Cp + O)));
    T* V = block;
    T* U = block + a2 * Tb * Cp;
    T* xc = thread_scratch<T>(kImage, static_cast<size_t>(nb * (C * HW + O * L)));
    T* gc = xc + nb * C * HW;
    T* zero = nullptr;
    T* tmp = transform_scratch(C, O, &zero);
    bool first = true;
    for (int64_t n = n0; n < n1; n += nb) {
      const int64_t cn = std::min(nb, n1 - n), tiles = cn * P;
      for (int64_t i = 0; i < cn; ++i) {
        transpose(x + (n + i) * C * HW, C, HW, xc + i * C * HW);
        transpose(gout + (n + i) * O * L, O, L, gc + i * O * L);
      }
      for (int64_t b0 = 0; b0 < tiles; b0 += Tb) {
        const int64_t tn = std::min(Tb, tiles - b0);
        in_transform(xc, g, b0, tn, tn, V, zero, tmp, nr);
        g_transform(gc, g, b0, tn, tn, U, zero, tmp);
        for (int xi = 0; xi < a2; ++xi)  // M[xi] (O, C) = or += U[xi]^T V[xi], V[xi] packed
          gemm_prepacked_b(O, U + xi * tn * O, O, gemm_packed_b_layout(V + xi * tn * Cp, tn, C), M + xi * O * C, C,
                           /*trans_a=*/true, first ? T(0) : T(1));
        first = false;
      }
    }
    if (first) std::fill(M, M + MN, T(0));
  });
  T* sum = nullptr;
  for (T* p : partial) {
    if (p == nullptr) continue;
    if (sum == nullptr) {
      sum = p;
      continue;
    }
#pragma omp parallel for schedule(static) if (MN > (1 << 16))
    for (int64_t i = 0; i < MN; ++i) sum[i] += p[i];
  }
  return sum;
}

// ... or shared: one M, all threads on each block of tiles (the transforms split over the tiles, the GEMMs over
// their own threads). No partial sums to add, and blocks of 32 times the per-core block's bytes of transforms (8
// MiB by default: the GEMMs' reduction runs over a block's tiles, longer than a thread's share of few images).
template <typename T, typename InT, typename GT>
T* weight_sums_shared(const T* x, const T* gout, int64_t N, const Tiles& g, InT in_transform, GT g_transform) {
  constexpr int a2 = FW::a * FW::a;
  const int64_t C = g.C, O = g.K, P = g.per_image(), HW = g.H * g.W, L = g.Ho * g.Wo, MN = a2 * O * C;
  const int64_t target =
      std::max<int64_t>(32 * conv_tuning().winograd_block_bytes / (a2 * (C + O) * static_cast<int64_t>(sizeof(T))), 24);
  T* M = thread_scratch<T>(kWeightSums, static_cast<size_t>(MN));
  const int64_t nb = images_per_chunk(target, P, N), Tb = std::min(target, nb * P);
  T* block = thread_scratch<T>(kBlock, static_cast<size_t>(a2 * Tb * (C + O)));
  T* V = block;
  T* U = block + a2 * Tb * C;
  T* xc = thread_scratch<T>(kImage, static_cast<size_t>(nb * (C * HW + O * L)));
  T* gc = xc + nb * C * HW;
  bool first = true;
  for (int64_t n = 0; n < N; n += nb) {
    const int64_t cn = std::min(nb, N - n), tiles = cn * P;
    parallel_shares(cn, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        transpose(x + (n + i) * C * HW, C, HW, xc + i * C * HW);
        transpose(gout + (n + i) * O * L, O, L, gc + i * O * L);
      }
    });
    for (int64_t b0 = 0; b0 < tiles; b0 += Tb) {
      const int64_t tn = std::min(Tb, tiles - b0);
      parallel_shares(tn, [&](int64_t t0, int64_t t1) {
        T* zero = nullptr;
        T* tmp = transform_scratch(C, O, &zero);
        in_transform(xc, g, b0 + t0, t1 - t0, tn, V + t0 * C, zero, tmp, 0);
        g_transform(gc, g, b0 + t0, t1 - t0, tn, U + t0 * O, zero, tmp);
      });
      add_block_sums(U, V, O, C, tn, first, M);
      first = false;
    }
  }
  if (first) std::fill(M, M + MN, T(0));
  return M;
}

// The weight gradient split by images runs blocks of this many times the forward's tiles: its GEMMs' reduction
// runs over a block's tiles, and at the forward's size (32 tiles for 64 channels) each of the 16 GEMMs per block
// spent as much on packing its operands and updating its sums as on products. Paired in one process on the AVX2
// Zen 4 guest (2 threads, 21 rounds): 1.08-1.10x on ResNet18's 64x16x16 -> 64 layer and 1.05-1.06x on the scratch
// CNN's 48x14x14 -> 96 for 2, 4 and 8 times (128x8x8 -> 128, whose sums the threads then shared, level).
constexpr int64_t kWeightBlockFactor = 4;

template <typename T>
void weight_grad(T* gw, const T* x, const T* gout, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t pad) {
  constexpr int a2 = FW::a * FW::a;
  Tiles g{C, H, W, O, pad, H + 2 * pad - 2, W + 2 * pad - 2, 0, 0};
  g.th = (g.Ho + 1) / 2;
  g.tw = (g.Wo + 1) / 2;
  const auto in_transform = Build<&input_transform<FW, T>>::pick();
  const auto g_transform = Build<&gout_transform<T>>::pick();
  const auto w_transform = Build<&weight_output_transform<T>>::pick();
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int split = conv_tuning().winograd_dw_split;
  const int64_t l2 = cpu_caches().l2.per_cpu_or(int64_t{256} << 10);
  const bool sums_past_l2 = 2 * a2 * O * C * static_cast<int64_t>(sizeof(T)) > 3 * l2;
  const bool shared = nt > 1 && (split == 2 || (split == 0 && sums_past_l2 &&
                                                N * g.per_image() < conv_tuning().winograd_dw_shared_tiles * nt));
  T* sum = shared ? weight_sums_shared(x, gout, N, g, in_transform, g_transform)
                  : weight_sums_by_images(x, gout, N, g, kWeightBlockFactor * block_tiles(a2, C, O, sizeof(T)),
                                          in_transform, g_transform);
  // A^T M A, the threads splitting the output channels
  parallel_shares(O, [&](int64_t o0, int64_t o1) {
    T* tmp = thread_scratch<T>(kTap, static_cast<size_t>(15 * C));
    w_transform(sum, O, C, o0, o1, gw, tmp);
  });
}

void check_tile(int tile) {
  if (tile != 2 && tile != 4) throw std::invalid_argument("winograd: output tile must be 2 or 4, got " + std::to_string(tile));
}

}  // namespace

template <typename T>
void winograd_conv(T* out, const T* x, const T* w, bool flip_transpose, const T* bias, int64_t N, int64_t C, int64_t H,
                   int64_t W, int64_t K, int64_t pad, int tile,
                   const std::function<void(int64_t, int64_t)>& image_done) {
  check_tile(tile);
  if (tile == 2)
    conv<2>(out, x, w, flip_transpose, bias, N, C, H, W, K, pad, image_done);
  else
    conv<4>(out, x, w, flip_transpose, bias, N, C, H, W, K, pad, image_done);
}

template <typename T>
void winograd_weight_grad(T* gw, const T* x, const T* gout, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                          int64_t pad) {
  weight_grad(gw, x, gout, N, C, H, W, O, pad);
}

template void winograd_weight_grad<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, int64_t);
template void winograd_weight_grad<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t,
                                           int64_t, int64_t);
template void winograd_conv<float>(float*, const float*, const float*, bool, const float*, int64_t, int64_t, int64_t,
                                   int64_t, int64_t, int64_t, int, const std::function<void(int64_t, int64_t)>&);
template void winograd_conv<double>(double*, const double*, const double*, bool, const double*, int64_t, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, int,
                                    const std::function<void(int64_t, int64_t)>&);

}  // namespace dl::cpu
