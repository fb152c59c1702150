// CPU 2-D convolution: im2col + GEMM, one image at a time.
//
// For image n and group g, with K = C/g * kh * kw rows and L = Ho * Wo columns:
//   forward          out_g (O/g, L)  = W_g (O/g, K) @ col (K, L)            col = im2col(x_g)
//   backward input   col (K, L)      = W_g^T @ gout_g (O/g, L);  gx_g = col2im(col)
//   backward weight  gW_g (O/g, K)  += gout_g @ col^T                        summed over images
// A 1x1, stride-1, unpadded convolution needs no im2col: x_g (C/g, H*W) is already the col.
//
// Threads: with at least as many images as threads, images are split over OpenMP threads, each
// with its own col buffer, and the GEMMs run single-threaded inside; otherwise the images run
// one after another and the GEMM uses the threads itself.
#include <algorithm>
#include <cstring>
#include <memory>

#include "tensor/cpu/gemm.h"
#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace dl::cpu {
namespace {

inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float beta, float* c, int64_t ldc) {
  sgemm(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* a, int64_t lda, const double* b,
                 int64_t ldb, double beta, double* c, int64_t ldc) {
  dgemm(ta, tb, M, N, K, 1.0, a, lda, b, ldb, beta, c, ldc);
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

struct Geom {
  int64_t N, C, H, W;     // input
  int64_t O, kh, kw;      // weight (O, C/G, kh, kw)
  int64_t Ho, Wo;         // output
  int64_t sh, sw, ph, pw, dh, dw, G;
  int64_t Cg() const { return C / G; }
  int64_t Og() const { return O / G; }
  int64_t K() const { return Cg() * kh * kw; }  // rows of col
  int64_t L() const { return Ho * Wo; }         // columns of col
  int64_t HW() const { return H * W; }
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

Geom make_geom(const Shape& x, const Shape& w, const Shape& out, const ops::Conv2dParams& p) {
  return {x[0], x[1], x[2], x[3], w[0], w[2], w[3], out[2], out[3], p.stride[0], p.stride[1],
          p.padding[0], p.padding[1], p.dilation[0], p.dilation[1], p.groups};
}

template <typename T>
using Buffer = std::unique_ptr<T[]>;
template <typename T>
Buffer<T> uninitialized(int64_t n) {
  return Buffer<T>(new T[static_cast<size_t>(std::max<int64_t>(n, 1))]);
}

// One row of col for a stride-1 conv whose output is as wide as its input ("same" padding, the
// common 3x3 case): over the valid output rows it is the input plane shifted by one offset, so
// it is one block copy, after which the columns that wrapped into a neighbouring row are zeroed.
template <typename T>
void im2col_row_shifted(const T* xc, T* row, const Geom& g, int64_t ki, int64_t iw0, int64_t lo, int64_t hi) {
  const int64_t W = g.W, L = g.L();
  // output rows whose tap row ih = oh - ph + ki * dh lies inside the image
  const int64_t oh_lo = std::clamp<int64_t>(g.ph - ki * g.dh, 0, g.Ho);
  const int64_t oh_hi = std::clamp<int64_t>(g.H + g.ph - ki * g.dh, oh_lo, g.Ho);
  std::fill(row, row + oh_lo * W, T(0));
  std::fill(row + oh_hi * W, row + L, T(0));
  if (oh_hi == oh_lo) return;
  // col[l] = x[l + delta] for l in [oh_lo * W, oh_hi * W), clipped to the plane
  const int64_t delta = (ki * g.dh - g.ph) * W + iw0;
  const int64_t l0 = std::clamp(-delta, oh_lo * W, oh_hi * W);
  const int64_t l1 = std::clamp(g.HW() - delta, l0, oh_hi * W);
  std::fill(row + oh_lo * W, row + l0, T(0));
  if (l1 > l0) std::memcpy(row + l0, xc + (l0 + delta), static_cast<size_t>(l1 - l0) * sizeof(T));
  std::fill(row + l1, row + oh_hi * W, T(0));
  if (lo == 0 && hi == W) return;
  for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
    T* r = row + oh * W;
    for (int64_t ow = 0; ow < lo; ++ow) r[ow] = T(0);
    for (int64_t ow = hi; ow < W; ++ow) r[ow] = T(0);
  }
}

// col (K, L) from one group's input planes x (C/G, H, W); out-of-image taps read as zero.
template <typename T>
void im2col(const T* x, T* col, const Geom& g) {
  const int64_t L = g.L();
  const bool shifted_rows = g.sh == 1 && g.sw == 1 && g.Wo == g.W;
  for (int64_t c = 0; c < g.Cg(); ++c) {
    const T* xc = x + c * g.HW();
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * L;
        const int64_t iw0 = kj * g.dw - g.pw;  // input column of output column 0
        // output columns whose tap lands inside the row: 0 <= ow * sw + iw0 < W
        const int64_t lo = std::min(g.Wo, iw0 >= 0 ? 0 : (-iw0 + g.sw - 1) / g.sw);
        const int64_t hi = std::max(lo, std::min(g.Wo, g.W - iw0 > 0 ? (g.W - iw0 + g.sw - 1) / g.sw : 0));
        if (shifted_rows) {
          im2col_row_shifted(xc, row, g, ki, iw0, lo, hi);
          continue;
        }
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          T* r = row + oh * g.Wo;
          const int64_t ih = oh * g.sh - g.ph + ki * g.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.Wo, T(0));
            continue;
          }
          const T* xr = xc + ih * g.W;
          std::fill(r, r + lo, T(0));
          if (g.sw == 1) {
            if (hi > lo) std::memcpy(r + lo, xr + lo + iw0, static_cast<size_t>(hi - lo) * sizeof(T));
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw + iw0];
          }
          std::fill(r + hi, r + g.Wo, T(0));
        }
      }
    }
  }
}

// x (C/G, H, W) += col2im(col); the adjoint of im2col.
template <typename T>
void col2im_add(const T* col, T* x, const Geom& g) {
  const int64_t L = g.L();
  for (int64_t c = 0; c < g.Cg(); ++c) {
    T* xc = x + c * g.HW();
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T* row = col + ((c * g.kh + ki) * g.kw + kj) * L;
        const int64_t iw0 = kj * g.dw - g.pw;
        const int64_t lo = std::min(g.Wo, iw0 >= 0 ? 0 : (-iw0 + g.sw - 1) / g.sw);
        const int64_t hi = std::max(lo, std::min(g.Wo, g.W - iw0 > 0 ? (g.W - iw0 + g.sw - 1) / g.sw : 0));
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + ki * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + oh * g.Wo;
          T* xr = xc + ih * g.W;
          if (g.sw == 1) {
#pragma omp simd  // col and x never alias
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow + iw0] += r[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw + iw0] += r[ow];
          }
        }
      }
    }
  }
}

// Runs body(n, col) for every image, over threads when the batch is large enough.
template <typename T, typename F>
void for_each_image(const Geom& g, F body) {
  const int nt = max_threads();
  const int64_t col_size = g.pointwise() ? 0 : g.K() * g.L();
  if (nt > 1 && g.N >= nt) {
    Buffer<T> cols = uninitialized<T>(col_size * nt);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t n = 0; n < g.N; ++n) body(n, cols.get() + col_size * thread_id());
  } else {
    Buffer<T> col = uninitialized<T>(col_size);
    for (int64_t n = 0; n < g.N; ++n) body(n, col.get());
  }
}

template <typename T>
void forward_typed(T* out, const T* x, const T* w, const T* bias, const Geom& g) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  for_each_image<T>(g, [&](int64_t n, T* col) {
    T* on = out + n * g.O * L;
    if (bias) {
      for (int64_t o = 0; o < g.O; ++o) std::fill(on + o * L, on + (o + 1) * L, bias[o]);
    }
    for (int64_t grp = 0; grp < g.G; ++grp) {
      const T* xg = x + (n * g.C + grp * g.Cg()) * g.HW();
      const T* src = xg;
      if (!g.pointwise()) {
        im2col(xg, col, g);
        src = col;
      }
      gemm(false, false, Og, L, K, w + grp * Og * K, K, src, L, bias ? T(1) : T(0), on + grp * Og * L, L);
    }
  });
}

template <typename T>
void backward_input_typed(T* gx, const T* gout, const T* w, const Geom& g) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  for_each_image<T>(g, [&](int64_t n, T* col) {
    for (int64_t grp = 0; grp < g.G; ++grp) {
      const T* go = gout + (n * g.O + grp * Og) * L;
      T* gxg = gx + (n * g.C + grp * g.Cg()) * g.HW();
      const T* wg = w + grp * Og * K;
      if (g.pointwise()) {
        gemm(true, false, K, L, Og, wg, K, go, L, T(0), gxg, L);
      } else {
        gemm(true, false, K, L, Og, wg, K, go, L, T(0), col, L);
        std::fill(gxg, gxg + g.Cg() * g.HW(), T(0));
        col2im_add(col, gxg, g);
      }
    }
  });
}

template <typename T>
void backward_weight_typed(T* gw, const T* gout, const T* x, const Geom& g) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  const int64_t wsize = g.O * K;
  // one image's contribution, accumulated into acc (beta 0 for the first image of acc)
  auto image = [&](int64_t n, T* col, T* acc, bool first) {
    for (int64_t grp = 0; grp < g.G; ++grp) {
      const T* go = gout + (n * g.O + grp * Og) * L;
      const T* xg = x + (n * g.C + grp * g.Cg()) * g.HW();
      const T* src = xg;
      if (!g.pointwise()) {
        im2col(xg, col, g);
        src = col;
      }
      gemm(false, true, Og, K, L, go, L, src, L, first ? T(0) : T(1), acc + grp * Og * K, K);
    }
  };
  const int nt = max_threads();
  const int64_t col_size = g.pointwise() ? 0 : K * L;
  if (g.N == 0) {
    std::fill(gw, gw + wsize, T(0));
  } else if (nt > 1 && g.N >= nt) {
    // thread t accumulates its images into its own copy (thread 0: gw itself), summed at the end
    Buffer<T> cols = uninitialized<T>(col_size * nt);
    Buffer<T> accs = uninitialized<T>(wsize * (nt - 1));
#pragma omp parallel num_threads(nt)
    {
      const int t = thread_id();
      T* acc = t == 0 ? gw : accs.get() + wsize * (t - 1);
      T* col = cols.get() + col_size * t;
      bool first = true;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.N; ++n) {
        image(n, col, acc, first);
        first = false;
      }
      if (first) std::fill(acc, acc + wsize, T(0));
#pragma omp barrier
#pragma omp for schedule(static)
      for (int64_t i = 0; i < wsize; ++i) {
        T s = gw[i];
        for (int u = 1; u < nt; ++u) s += accs[wsize * (u - 1) + i];
        gw[i] = s;
      }
    }
  } else {
    Buffer<T> col = uninitialized<T>(col_size);
    for (int64_t n = 0; n < g.N; ++n) image(n, col.get(), gw, n == 0);
  }
}

template <typename T>
void backward_bias_typed(T* gb, const T* gout, int64_t N, int64_t O, int64_t L) {
#pragma omp parallel for schedule(static) if (N * O * L > kParallelGrain)
  for (int64_t o = 0; o < O; ++o) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* p = gout + (n * O + o) * L;
      T part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t l = 0; l < L; ++l) part += p[l];
      s += part;
    }
    gb[o] = static_cast<T>(s);
  }
}

void conv2d_forward_kernel(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                           const ops::Conv2dParams& p) {
  Geom g = make_geom(x.sizes(), w.sizes(), out.sizes(), p);
  DL_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
    forward_typed<scalar_t>(out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                            bias.defined() ? bias.data_ptr<scalar_t>() : nullptr, g);
  });
}

void conv2d_backward_input_kernel(const Tensor& gx, const Tensor& gout, const Tensor& w, const ops::Conv2dParams& p) {
  Geom g = make_geom(gx.sizes(), w.sizes(), gout.sizes(), p);
  DL_DISPATCH_FLOATING(gx.dtype(), "conv2d backward", [&] {
    backward_input_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), g);
  });
}

void conv2d_backward_weight_kernel(const Tensor& gw, const Tensor& gout, const Tensor& x, const ops::Conv2dParams& p) {
  Geom g = make_geom(x.sizes(), gw.sizes(), gout.sizes(), p);
  DL_DISPATCH_FLOATING(gw.dtype(), "conv2d backward", [&] {
    backward_weight_typed<scalar_t>(gw.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), g);
  });
}

void conv2d_backward_bias_kernel(const Tensor& gb, const Tensor& gout) {
  const auto& s = gout.sizes();
  DL_DISPATCH_FLOATING(gb.dtype(), "conv2d backward", [&] {
    backward_bias_typed<scalar_t>(gb.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), s[0], s[1], s[2] * s[3]);
  });
}

}  // namespace

void register_conv_kernels(KernelTable& t) {
  t.conv2d_forward = conv2d_forward_kernel;
  t.conv2d_backward_input = conv2d_backward_input_kernel;
  t.conv2d_backward_weight = conv2d_backward_weight_kernel;
  t.conv2d_backward_bias = conv2d_backward_bias_kernel;
}

}  // namespace dl::cpu
