// Winograd F(2x2, 3x3) (Lavin & Gray, 2016). With d a 4x4 input tile, g a 3x3 kernel and
//   B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
//         [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
//         [0 -1  1  0]         [1/2 -1/2  1/2]
//         [0  1  0 -1]         [ 0    0    1 ]
// the 2x2 output tile is Y = A^T [(G g G^T) .* (B^T d B)] A. Summed over input channels, the
// elementwise product becomes, for each of the 16 positions xi, a matrix product over channels:
//   M_xi (K, T) = U_xi (K, C) @ V_xi (C, T),   U = G g G^T per kernel, V = B^T d B per tile,
// T the tiles of a chunk of images. So a chunk is: input transform (x -> V), 16 GEMMs, output
// transform (M -> out). Tile (ty, tx) covers output rows 2ty, 2ty+1 and input rows 2ty - pad ... + 3;
// taps outside the image read zero, outputs past an odd edge are dropped.
#include "tensor/cpu/winograd.h"

#include <algorithm>
#include <cstring>

#include "tensor/cpu/conv.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/scratch.h"

namespace dl::cpu {
namespace {

inline void gemm(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c) {
  sgemm(false, false, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
}
inline void gemm(int64_t M, int64_t N, int64_t K, const double* a, const double* b, double* c) {
  dgemm(false, false, M, N, K, 1.0, a, K, b, N, 0.0, c, N);
}

// scratch slots (tensor/cpu/scratch.h): conv.cpp uses 0-2 on the same threads, at other times
enum Slot { kV = 0, kM = 1, kRows = 3 };

struct Tiles {
  int64_t C, H, W, K, pad, Ho, Wo, th, tw;
  int64_t per_image() const { return th * tw; }
};

// V (16, C, ldv): the transformed tiles of one image, tile t0 + ty * tw + tx.
template <typename T>
void input_transform(const T* x, const Tiles& g, T* V, int64_t ldv, int64_t t0, T* rows) {
  const int64_t Wp = 2 * g.tw + 2;  // the padded width the tiles of one row read
  T* r[4] = {rows, rows + Wp, rows + 2 * Wp, rows + 3 * Wp};
  T* b = rows + 4 * Wp;  // the four rows after B^T: b[k * Wp + col]
  for (int64_t c = 0; c < g.C; ++c) {
    const T* plane = x + c * g.H * g.W;
    for (int64_t ty = 0; ty < g.th; ++ty) {
      // the 4 input rows of this tile row, zero-padded: column s of r[k] is input column s - pad
      for (int64_t k = 0; k < 4; ++k) {
        const int64_t ih = 2 * ty - g.pad + k;
        T* row = r[k];
        if (ih < 0 || ih >= g.H) {
          std::fill(row, row + Wp, T(0));
          continue;
        }
        const int64_t lo = std::min<int64_t>(g.pad, Wp), hi = std::min<int64_t>(Wp, g.W + g.pad);
        std::fill(row, row + lo, T(0));
        if (hi > lo) std::memcpy(row + lo, plane + ih * g.W + (lo - g.pad), static_cast<size_t>(hi - lo) * sizeof(T));
        std::fill(row + std::max(hi, lo), row + Wp, T(0));
      }
      // B^T on the columns: b0 = r0 - r2, b1 = r1 + r2, b2 = r2 - r1, b3 = r1 - r3
#pragma omp simd
      for (int64_t s = 0; s < Wp; ++s) {
        const T d0 = r[0][s], d1 = r[1][s], d2 = r[2][s], d3 = r[3][s];
        b[s] = d0 - d2;
        b[Wp + s] = d1 + d2;
        b[2 * Wp + s] = d2 - d1;
        b[3 * Wp + s] = d1 - d3;
      }
      // B on the rows of each tile, written to V[xi = 4k + j][c][t]
      const int64_t t = t0 + ty * g.tw;
      for (int64_t k = 0; k < 4; ++k) {
        const T* bk = b + k * Wp;
        T* v0 = V + ((4 * k + 0) * g.C + c) * ldv + t;
        T* v1 = V + ((4 * k + 1) * g.C + c) * ldv + t;
        T* v2 = V + ((4 * k + 2) * g.C + c) * ldv + t;
        T* v3 = V + ((4 * k + 3) * g.C + c) * ldv + t;
#pragma omp simd
        for (int64_t tx = 0; tx < g.tw; ++tx) {
          const T a0 = bk[2 * tx], a1 = bk[2 * tx + 1], a2 = bk[2 * tx + 2], a3 = bk[2 * tx + 3];
          v0[tx] = a0 - a2;
          v1[tx] = a1 + a2;
          v2[tx] = a2 - a1;
          v3[tx] = a1 - a3;
        }
      }
    }
  }
}

// out (K, Ho, Wo) of one image from M (16, K, ldm), its tiles starting at t0; bias (K) or null.
template <typename T>
void output_transform(const T* M, int64_t ldm, int64_t t0, const Tiles& g, const T* bias, T* out, T* rows) {
  T* y0 = rows;             // y00 y01 interleaved, one tile row
  T* y1 = rows + 2 * g.tw;  // y10 y11
  for (int64_t k = 0; k < g.K; ++k) {
    const T b = bias ? bias[k] : T(0);
    const T* m[16];
    for (int64_t xi = 0; xi < 16; ++xi) m[xi] = M + (xi * g.K + k) * ldm + t0;
    T* ok = out + k * g.Ho * g.Wo;
    for (int64_t ty = 0; ty < g.th; ++ty) {
      const int64_t o = ty * g.tw;
#pragma omp simd
      for (int64_t tx = 0; tx < g.tw; ++tx) {
        const int64_t i = o + tx;
        // A^T on the columns, then A on the rows
        T u0[4], u1[4];
        for (int s = 0; s < 4; ++s) {
          u0[s] = m[s][i] + m[4 + s][i] + m[8 + s][i];
          u1[s] = m[4 + s][i] - m[8 + s][i] - m[12 + s][i];
        }
        y0[2 * tx] = u0[0] + u0[1] + u0[2] + b;
        y0[2 * tx + 1] = u0[1] - u0[2] - u0[3] + b;
        y1[2 * tx] = u1[0] + u1[1] + u1[2] + b;
        y1[2 * tx + 1] = u1[1] - u1[2] - u1[3] + b;
      }
      std::memcpy(ok + 2 * ty * g.Wo, y0, static_cast<size_t>(g.Wo) * sizeof(T));
      if (2 * ty + 1 < g.Ho) std::memcpy(ok + (2 * ty + 1) * g.Wo, y1, static_cast<size_t>(g.Wo) * sizeof(T));
    }
  }
}

}  // namespace

template <typename T>
void winograd_transform_weights(const T* w, int64_t O, int64_t C, bool flip_transpose, T* U) {
  const int64_t rows = flip_transpose ? C : O, cols = flip_transpose ? O : C;  // U is (16, rows, cols)
#pragma omp parallel for schedule(static) if (O * C > 4096)
  for (int64_t o = 0; o < O; ++o) {
    for (int64_t c = 0; c < C; ++c) {
      const T* k = w + (o * C + c) * 9;
      T g[3][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) g[i][j] = flip_transpose ? k[(2 - i) * 3 + (2 - j)] : k[i * 3 + j];
      // G g (4x3), then (G g) G^T (4x4)
      T gg[4][3];
      for (int j = 0; j < 3; ++j) {
        gg[0][j] = g[0][j];
        gg[1][j] = T(0.5) * (g[0][j] + g[1][j] + g[2][j]);
        gg[2][j] = T(0.5) * (g[0][j] - g[1][j] + g[2][j]);
        gg[3][j] = g[2][j];
      }
      const int64_t at = flip_transpose ? c * cols + o : o * cols + c;
      for (int i = 0; i < 4; ++i) {
        const T a = gg[i][0], b = gg[i][1], cc = gg[i][2];
        const T u[4] = {a, T(0.5) * (a + b + cc), T(0.5) * (a - b + cc), cc};
        for (int j = 0; j < 4; ++j) U[(i * 4 + j) * rows * cols + at] = u[j];
      }
    }
  }
}

template <typename T>
void winograd_conv(T* out, const T* x, const T* U, const T* bias, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t K, int64_t pad) {
  Tiles g{C, H, W, K, pad, H + 2 * pad - 2, W + 2 * pad - 2, 0, 0};
  g.th = (g.Ho + 1) / 2;
  g.tw = (g.Wo + 1) / 2;
  const int64_t P = g.per_image();
  parallel_shares(N, [&](int64_t n0, int64_t n1) {
    // images per chunk: about target_columns tiles, within the buffer budget (V and M hold 16 values
    // per tile and channel)
    const ConvTuning& tune = conv_tuning();
    const int64_t avail = n1 - n0;
    int64_t b = std::clamp<int64_t>((tune.target_columns + P - 1) / P, 1, std::max<int64_t>(avail, 1));
    const int64_t per_image = 16 * std::max(C, K) * P * static_cast<int64_t>(sizeof(T));
    b = std::max<int64_t>(1, std::min(b, tune.max_col_bytes / std::max<int64_t>(per_image, 1)));
    const int64_t chunks = (avail + b - 1) / b;
    if (chunks > 0) b = (avail + chunks - 1) / chunks;
    T* rows = thread_scratch<T>(kRows, static_cast<size_t>(8 * (2 * g.tw + 2)));
    for (int64_t n = n0; n < n1; n += b) {
      const int64_t nb = std::min(b, n1 - n), tiles = nb * P;
      T* V = thread_scratch<T>(kV, static_cast<size_t>(16 * C * tiles));
      T* M = thread_scratch<T>(kM, static_cast<size_t>(16 * K * tiles));
      for (int64_t i = 0; i < nb; ++i) input_transform(x + (n + i) * C * H * W, g, V, tiles, i * P, rows);
      for (int64_t xi = 0; xi < 16; ++xi) gemm(K, tiles, C, U + xi * K * C, V + xi * C * tiles, M + xi * K * tiles);
      for (int64_t i = 0; i < nb; ++i)
        output_transform(M, tiles, i * P, g, bias, out + (n + i) * K * g.Ho * g.Wo, rows);
    }
  });
}

template void winograd_transform_weights<float>(const float*, int64_t, int64_t, bool, float*);
template void winograd_transform_weights<double>(const double*, int64_t, int64_t, bool, double*);
template void winograd_conv<float>(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                                   int64_t, int64_t, int64_t);
template void winograd_conv<double>(double*, const double*, const double*, const double*, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, int64_t);

}  // namespace dl::cpu
