// CPU 2-D pooling (max, avg, adaptive avg), forward and backward. Each (n, c) plane is
// independent, so planes are split over OpenMP threads; the window rules are PyTorch's:
// max pool pads with -inf (only real elements compete; NaN wins; first maximum on ties), avg
// pool clips its windows at the padded border and divides by the clipped or unclipped count,
// adaptive windows run from floor(i * In / Out) to ceil((i + 1) * In / Out).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/pool_max.h"
#include "tensor/cpu/register.h"
#include "tensor/cpu/scratch.h"

namespace dl::cpu {
namespace {

// parallelise over planes when the whole op has enough work
inline bool worth_threads(const Pool2dParams& p, int64_t per_output) {
  return p.planes > 1 && p.planes * p.Ho * p.Wo * per_output > kParallelGrain;
}

// ---- max pool ----------------------------------------------------------------------------------

// The window rule as one sequential update: a value is taken when it is larger than the best so
// far or is NaN, so the first maximum wins ties, the last NaN wins over everything, and only real
// elements compete (the running best starts at -inf with the window's first index).
template <typename T>
inline void take_if_better(T v, int64_t i, T& best, int64_t& bi) {
  const bool take = (v > best) | (v != v);  // no short circuit: no branch
  bi = take ? i : bi;
  best = take ? v : best;
}

// 2x2 windows, stride 2, no padding: one output row from input rows r0 and r0 + W.
template <typename T>
DL_VECTOR_CLONES void max_pool_2x2_row(T* o, int64_t* ix, const T* r0, const T* r1, int64_t Wo, int64_t base,
                                       int64_t W) {
#pragma omp simd
  for (int64_t ow = 0; ow < Wo; ++ow) {
    const int64_t i = base + 2 * ow;
    T best = r0[2 * ow];
    int64_t bi = i;
    take_if_better(r0[2 * ow + 1], i + 1, best, bi);
    take_if_better(r1[2 * ow], i + W, best, bi);
    take_if_better(r1[2 * ow + 1], i + W + 1, best, bi);
    o[ow] = best;
    ix[ow] = bi;
  }
}

// Windows 3 wide at horizontal stride sw that lie inside the row (ResNet's 3x3 stride-2 stem pool
// away from the left and right edges), rows h0..h1 of the plane: output columns [lo, hi) at once.
// The taps are visited in the window's row-major order, each as one pass over the columns with
// o / ix as the running best (vectorised across columns; stride 2 spelled out so the loads are
// shuffles, not gathers), under take_if_better's rule: first maximum on ties, last NaN.
// ix null: values only (the same rule without the index: NaN wins, else the larger).
template <typename T>
DL_VECTOR_CLONES void max_pool_k3_row(T* o, int64_t* ix, const T* xp, int64_t W, int64_t h0, int64_t h1, int64_t lo,
                                      int64_t hi, int64_t sw, int64_t pw) {
  if (ix == nullptr) {
    for (int64_t ow = lo; ow < hi; ++ow) o[ow] = -std::numeric_limits<T>::infinity();
    for (int64_t h = h0; h < h1; ++h) {
      const T* r = xp + h * W - pw;
      for (int64_t dw = 0; dw < 3; ++dw, ++r) {
        if (sw == 2) {
#pragma omp simd
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = r[2 * ow];
            o[ow] = (v > o[ow]) | (v != v) ? v : o[ow];
          }
        } else {
#pragma omp simd
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = r[ow * sw];
            o[ow] = (v > o[ow]) | (v != v) ? v : o[ow];
          }
        }
      }
    }
    return;
  }
  for (int64_t ow = lo; ow < hi; ++ow) {
    o[ow] = -std::numeric_limits<T>::infinity();
    ix[ow] = h0 * W + ow * sw - pw;
  }
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t dw = 0; dw < 3; ++dw) {
      const int64_t base = h * W - pw + dw;  // index of column ow's tap: base + ow * sw
      const T* r = xp + base;
      if (sw == 2) {
#pragma omp simd
        for (int64_t ow = lo; ow < hi; ++ow) take_if_better(r[2 * ow], base + 2 * ow, o[ow], ix[ow]);
      } else {
#pragma omp simd
        for (int64_t ow = lo; ow < hi; ++ow) take_if_better(r[ow * sw], base + ow * sw, o[ow], ix[ow]);
      }
    }
  }
}

// Values only (no backward will read indices), 3x3 windows at stride sw (1, 2 or any): the plane
// is first copied into `pad`, a scratch plane with -inf borders wide enough for every window
// (padding and ceil_mode's overhang), so each output row is one loop over nine taps with no
// clipping, vectorised across the row. NaN wins, as in the indexed path; -inf never beats a real
// value, and every window holds at least one (padding is at most half the kernel).
template <typename T, int SW>
DL_VECTOR_CLONES void max3x3_rows(T* op, const T* pad, int64_t Wq, int64_t Ho, int64_t Wo, int64_t sh, int64_t sw_any) {
  const int64_t sw = SW > 0 ? SW : sw_any;
  auto better = [](T v, T m) { return (v > m) | (v != v) ? v : m; };
  for (int64_t oh = 0; oh < Ho; ++oh) {
    const T* r0 = pad + oh * sh * Wq;
    const T* r1 = r0 + Wq;
    const T* r2 = r1 + Wq;
    T* o = op + oh * Wo;
#pragma omp simd
    for (int64_t ow = 0; ow < Wo; ++ow) {
      const int64_t j = ow * sw;
      T m = r0[j];
      m = better(r0[j + 1], m);
      m = better(r0[j + 2], m);
      m = better(r1[j], m);
      m = better(r1[j + 1], m);
      m = better(r1[j + 2], m);
      m = better(r2[j], m);
      m = better(r2[j + 1], m);
      m = better(r2[j + 2], m);
      o[ow] = m;
    }
  }
}

// The plane copied into a scratch plane with -inf borders wide enough for every window of a K x K pool (padding
// and ceil_mode's overhang); returns it, with its row length in Wq.
template <typename T>
T* padded_plane(const T* xp, const Pool2dParams& p, int64_t K, int64_t& Wq) {
  const int64_t ph = p.padding[0], pw = p.padding[1];
  Wq = std::max(p.W + 2 * pw, (p.Wo - 1) * p.stride[1] + K);
  const int64_t Hq = std::max(p.H + 2 * ph, (p.Ho - 1) * p.stride[0] + K);
  T* pad = thread_scratch<T>(1, static_cast<size_t>(Hq * Wq));
  const T ninf = -std::numeric_limits<T>::infinity();
  std::fill(pad, pad + ph * Wq, ninf);
  for (int64_t h = 0; h < p.H; ++h) {
    T* row = pad + (h + ph) * Wq;
    std::fill(row, row + pw, ninf);
    std::copy(xp + h * p.W, xp + (h + 1) * p.W, row + pw);
    std::fill(row + pw + p.W, row + Wq, ninf);
  }
  std::fill(pad + (p.H + ph) * Wq, pad + Hq * Wq, ninf);
  return pad;
}


// The vector kernels the max pool's fast paths use (pool_max.h): the best set the CPU has, or a lower one named by
// DL_POOL_KERNEL=avx2|scalar (read on every call: the tests run each); nullptr: the scalar loops.
const MaxPoolKernels* pool_kernel() {
#if defined(__x86_64__)
  // (AVX-512: F and BW, as simd_avx512.cpp is compiled for; the direct convolution asks the same)
  const int best = cpu_has_avx512f() && cpu_has_avx512bw() ? 2 : cpu_has_avx2() ? 1 : 0;
  const char* env = std::getenv("DL_POOL_KERNEL");
  const int want = env == nullptr || *env == '\0'     ? 2
                   : std::strcmp(env, "scalar") == 0 ? 0
                   : std::strcmp(env, "avx2") == 0   ? 1
                                                     : 2;
  const int k = std::min(best, want);
  return k == 2 ? &max_pool_kernels_avx512() : k == 1 ? &max_pool_kernels_avx2() : nullptr;
#else
  return nullptr;
#endif
}

// Indexed max pool of one plane on the vector path (pool_max.inc) when it applies (float32, K x K windows with
// K = 2 or 3, horizontal stride 2, planes of under 2^31 values; kernel: pool_kernel()); false when it does not.
template <typename T>
bool max_pool_indexed_fast_plane(const T* xp, T* op, int64_t* ip, const Pool2dParams& p, const MaxPoolKernels* kernel) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t K = p.kernel[0];
    if (!(K == p.kernel[1] && (K == 2 || K == 3) && p.stride[1] == 2 && p.H * p.W < (int64_t{1} << 31) &&
          kernel != nullptr))
      return false;
    // windows that all lie inside the plane (no padding, no ceil_mode overhang: ResNet's and the scratch CNN's
    // 2x2 pools) read the plane itself; the others its -inf bordered copy
    const bool inside = p.padding[0] == 0 && p.padding[1] == 0 && (p.Ho - 1) * p.stride[0] + K <= p.H &&
                        (p.Wo - 1) * p.stride[1] + K <= p.W;
    int64_t Wq = p.W;
    const float* pad = inside ? xp : padded_plane(xp, p, K, Wq);
    kernel->indexed_s2[K - 2](op, ip, pad, Wq, p);
    return true;
  }
  (void)xp, (void)op, (void)ip, (void)p, (void)kernel;
  return false;
}

template <typename T>
void max_pool_3x3_values_plane(const T* xp, T* op, const Pool2dParams& p, const MaxPoolKernels* kernel) {
  int64_t Wq = 0;
  const T* pad = padded_plane(xp, p, 3, Wq);
  if constexpr (std::is_same_v<T, float>) {
    if (p.stride[1] == 2 && kernel != nullptr) {
      kernel->max3x3_s2_rows(op, pad, Wq, p.Ho, p.Wo, p.stride[0]);
      return;
    }
  }
  if (p.stride[1] == 2)
    max3x3_rows<T, 2>(op, pad, Wq, p.Ho, p.Wo, p.stride[0], 2);
  else if (p.stride[1] == 1)
    max3x3_rows<T, 1>(op, pad, Wq, p.Ho, p.Wo, p.stride[0], 1);
  else
    max3x3_rows<T, 0>(op, pad, Wq, p.Ho, p.Wo, p.stride[0], p.stride[1]);
}

// Any window, clipped to the image. The scan keeps a branch-free select on the comparison (on real
// data it is a coin flip the predictor loses) and only notes NaNs, which a rare second scan settles.
template <typename T>
inline void max_pool_window(const T* xp, const Pool2dParams& p, int64_t h0, int64_t h1, int64_t w0, int64_t w1, T& out,
                            int64_t& idx) {
  T best = -std::numeric_limits<T>::infinity();
  int64_t bi = h0 * p.W + w0;
  bool nan = false;
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const T v = xp[h * p.W + w];
      const bool take = v > best;
      bi = take ? h * p.W + w : bi;
      best = take ? v : best;
      nan |= v != v;
    }
  }
  if (nan) {  // the last NaN of the window wins, as in PyTorch
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w)
        if (std::isnan(xp[h * p.W + w])) best = xp[h * p.W + w], bi = h * p.W + w;
  }
  out = best;
  idx = bi;
}

// idx null: values only (inference): the indices of one output row go to a row of scratch that stays in L1.
template <typename T>
void max_pool_forward_typed(T* out, int64_t* idx, const T* x, const Pool2dParams& p) {
  // plain variables, not structured bindings: clang 14 cannot capture bindings in OpenMP regions
  const int64_t kh = p.kernel[0], kw = p.kernel[1], sh = p.stride[0], sw = p.stride[1];
  const int64_t ph = p.padding[0], pw = p.padding[1];
  const bool two_by_two = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0;
  const MaxPoolKernels* kernel = pool_kernel();
#pragma omp parallel for schedule(static) if (worth_threads(p, kh * kw))
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    const T* xp = x + pl * p.H * p.W;
    T* op = out + pl * p.Ho * p.Wo;
    if (idx == nullptr && kh == 3 && kw == 3) {
      max_pool_3x3_values_plane(xp, op, p, kernel);
      continue;
    }
    if (idx != nullptr && max_pool_indexed_fast_plane(xp, op, idx + pl * p.Ho * p.Wo, p, kernel)) continue;
    int64_t* ip = idx ? idx + pl * p.Ho * p.Wo : thread_scratch<int64_t>(0, static_cast<size_t>(p.Wo));
    for (int64_t oh = 0; oh < p.Ho; ++oh) {
      int64_t* irow = idx ? ip + oh * p.Wo : ip;
      const int64_t h0 = std::max<int64_t>(oh * sh - ph, 0), h1 = std::min(oh * sh - ph + kh, p.H);
      // output columns [lo, hi) have whole windows inside the row (no clipping)
      int64_t lo = p.Wo, hi = p.Wo;
      if (two_by_two && 2 * oh + 1 < p.H) {
        // ceil_mode may add a last window that hangs over the edge: the generic loop takes it
        const int64_t whole = std::min(p.Wo, p.W / 2);
        max_pool_2x2_row(op + oh * p.Wo, irow, xp + 2 * oh * p.W, xp + (2 * oh + 1) * p.W, whole,
                         2 * oh * p.W, p.W);
        lo = 0;
        hi = whole;
      } else if (kw == 3 && h1 > h0) {
        // columns whose window [ow * sw - pw, + 3) lies inside [0, W)
        lo = std::min(p.Wo, (pw + sw - 1) / sw);
        hi = std::max(lo, std::min(p.Wo, p.W + pw - 3 >= 0 ? (p.W + pw - 3) / sw + 1 : 0));
        max_pool_k3_row(op + oh * p.Wo, idx ? irow : nullptr, xp, p.W, h0, h1, lo, hi, sw, pw);
      }
      for (int64_t ow = 0; ow < p.Wo; ++ow) {
        if (ow == lo) ow = hi;
        if (ow >= p.Wo) break;
        const int64_t w0 = std::max<int64_t>(ow * sw - pw, 0), w1 = std::min(ow * sw - pw + kw, p.W);
        max_pool_window(xp, p, h0, h1, w0, w1, op[oh * p.Wo + ow], irow[ow]);
      }
    }
  }
}

template <typename T>
void max_pool_backward_typed(T* gx, const T* gout, const int64_t* idx, const Pool2dParams& p) {
#pragma omp parallel for schedule(static) if (worth_threads(p, 2))
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    T* gp = gx + pl * p.H * p.W;
    std::fill(gp, gp + p.H * p.W, T(0));
    const T* go = gout + pl * p.Ho * p.Wo;
    const int64_t* ip = idx + pl * p.Ho * p.Wo;
    for (int64_t o = 0; o < p.Ho * p.Wo; ++o) gp[ip[o]] += go[o];
  }
}

void max_pool2d_forward_kernel(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  DL_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
    max_pool_forward_typed<scalar_t>(out.data_ptr<scalar_t>(), indices.defined() ? indices.data_ptr<int64_t>() : nullptr,
                                     x.data_ptr<scalar_t>(), p);
  });
}

void max_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Tensor& indices, const Pool2dParams& p) {
  DL_DISPATCH_FLOATING(gx.dtype(), "max_pool2d backward", [&] {
    max_pool_backward_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), p);
  });
}

// ---- avg pool ----------------------------------------------------------------------------------

// The clipped window of output (oh, ow) and its divisor, exactly as PyTorch's CPU kernel.
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
};
inline AvgWindow avg_window(int64_t oh, int64_t ow, const Pool2dParams& p) {
  int64_t h0 = oh * p.stride[0] - p.padding[0], w0 = ow * p.stride[1] - p.padding[1];
  int64_t h1 = std::min(h0 + p.kernel[0], p.H + p.padding[0]);
  int64_t w1 = std::min(w0 + p.kernel[1], p.W + p.padding[1]);
  const int64_t pool_size = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, p.H);
  w1 = std::min(w1, p.W);
  const int64_t inside = std::max<int64_t>(h1 - h0, 0) * std::max<int64_t>(w1 - w0, 0);
  return {h0, h1, w0, w1, p.count_include_pad ? pool_size : inside};
}

template <typename T>
void avg_pool_forward_typed(T* out, const T* x, const Pool2dParams& p) {
#pragma omp parallel for schedule(static) if (worth_threads(p, p.kernel[0] * p.kernel[1]))
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    const T* xp = x + pl * p.H * p.W;
    T* op = out + pl * p.Ho * p.Wo;
    for (int64_t oh = 0; oh < p.Ho; ++oh) {
      for (int64_t ow = 0; ow < p.Wo; ++ow) {
        const AvgWindow win = avg_window(oh, ow, p);
        if (win.h0 >= win.h1 || win.w0 >= win.w1) {
          op[oh * p.Wo + ow] = T(0);
          continue;
        }
        double s = 0;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) s += xp[h * p.W + w];
        op[oh * p.Wo + ow] = static_cast<T>(s / static_cast<double>(win.divisor));
      }
    }
  }
}

template <typename T>
void avg_pool_backward_typed(T* gx, const T* gout, const Pool2dParams& p) {
#pragma omp parallel for schedule(static) if (worth_threads(p, p.kernel[0] * p.kernel[1]))
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    T* gp = gx + pl * p.H * p.W;
    std::fill(gp, gp + p.H * p.W, T(0));
    const T* go = gout + pl * p.Ho * p.Wo;
    for (int64_t oh = 0; oh < p.Ho; ++oh) {
      for (int64_t ow = 0; ow < p.Wo; ++ow) {
        const AvgWindow win = avg_window(oh, ow, p);
        if (win.h0 >= win.h1 || win.w0 >= win.w1) continue;
        const T share = static_cast<T>(go[oh * p.Wo + ow] / static_cast<double>(win.divisor));
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) gp[h * p.W + w] += share;
      }
    }
  }
}

void avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  DL_DISPATCH_FLOATING(x.dtype(), "avg_pool2d", [&] {
    avg_pool_forward_typed<scalar_t>(out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), p);
  });
}

void avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Pool2dParams& p) {
  DL_DISPATCH_FLOATING(gx.dtype(), "avg_pool2d backward", [&] {
    avg_pool_backward_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), p);
  });
}

// ---- adaptive avg pool -------------------------------------------------------------------------

inline int64_t window_start(int64_t i, int64_t out, int64_t in) { return (i * in) / out; }
inline int64_t window_end(int64_t i, int64_t out, int64_t in) { return ((i + 1) * in + out - 1) / out; }

template <typename T>
DL_VECTOR_CLONES double plane_sum(const T* p, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(p[i]);
  return s;
}

template <typename T>
DL_VECTOR_CLONES void plane_fill(T* p, int64_t n, T v) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) p[i] = v;
}

template <typename T>
void adaptive_forward_typed(T* out, const T* x, const Pool2dParams& p) {
  if (p.Ho == 1 && p.Wo == 1) {  // global average pooling
    const int64_t hw = p.H * p.W;
#pragma omp parallel for schedule(static) if (p.planes > 1 && p.planes * hw > kParallelGrain)
    for (int64_t pl = 0; pl < p.planes; ++pl) {
      const T* xp = x + pl * hw;
      double s = 0;
      if (hw >= 16) {
        s = plane_sum(xp, hw);
      } else {  // tiny planes (ResNet18's 2x2 at 64x64 inputs): a call per plane would cost more than the sum
        for (int64_t i = 0; i < hw; ++i) s += static_cast<double>(xp[i]);
      }
      out[pl] = static_cast<T>(s / static_cast<double>(hw));
    }
    return;
  }
  // each output averages about (H / Ho) * (W / Wo) inputs
  const int64_t per = std::max<int64_t>(1, (p.H / std::max<int64_t>(p.Ho, 1) + 1) * (p.W / std::max<int64_t>(p.Wo, 1) + 1));
#pragma omp parallel for schedule(static) if (worth_threads(p, per))
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    const T* xp = x + pl * p.H * p.W;
    T* op = out + pl * p.Ho * p.Wo;
    for (int64_t oh = 0; oh < p.Ho; ++oh) {
      const int64_t h0 = window_start(oh, p.Ho, p.H), h1 = window_end(oh, p.Ho, p.H);
      for (int64_t ow = 0; ow < p.Wo; ++ow) {
        const int64_t w0 = window_start(ow, p.Wo, p.W), w1 = window_end(ow, p.Wo, p.W);
        double s = 0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) s += xp[h * p.W + w];
        op[oh * p.Wo + ow] = static_cast<T>(s / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

template <typename T>
void adaptive_backward_typed(T* gx, const T* gout, const Pool2dParams& p) {
  if (p.Ho == 1 && p.Wo == 1) {
    const int64_t hw = p.H * p.W;
#pragma omp parallel for schedule(static) if (p.planes > 1 && p.planes * hw > kParallelGrain)
    for (int64_t pl = 0; pl < p.planes; ++pl)
      plane_fill(gx + pl * hw, hw, static_cast<T>(gout[pl] / static_cast<double>(hw)));
    return;
  }
  const int64_t per = std::max<int64_t>(1, (p.H / std::max<int64_t>(p.Ho, 1) + 1) * (p.W / std::max<int64_t>(p.Wo, 1) + 1));
#pragma omp parallel for schedule(static) if (worth_threads(p, per))
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    T* gp = gx + pl * p.H * p.W;
    std::fill(gp, gp + p.H * p.W, T(0));
    const T* go = gout + pl * p.Ho * p.Wo;
    for (int64_t oh = 0; oh < p.Ho; ++oh) {
      const int64_t h0 = window_start(oh, p.Ho, p.H), h1 = window_end(oh, p.Ho, p.H);
      for (int64_t ow = 0; ow < p.Wo; ++ow) {
        const int64_t w0 = window_start(ow, p.Wo, p.W), w1 = window_end(ow, p.Wo, p.W);
        const T share = static_cast<T>(go[oh * p.Wo + ow] / static_cast<double>((h1 - h0) * (w1 - w0)));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) gp[h * p.W + w] += share;
      }
    }
  }
}

void adaptive_avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  DL_DISPATCH_FLOATING(x.dtype(), "adaptive_avg_pool2d", [&] {
    adaptive_forward_typed<scalar_t>(out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), p);
  });
}

void adaptive_avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Pool2dParams& p) {
  DL_DISPATCH_FLOATING(gx.dtype(), "adaptive_avg_pool2d backward", [&] {
    adaptive_backward_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), p);
  });
}

}  // namespace

void register_pool_kernels(KernelTable& t) {
  t.max_pool2d_forward = max_pool2d_forward_kernel;
  t.max_pool2d_backward = max_pool2d_backward_kernel;
  t.avg_pool2d_forward = avg_pool2d_forward_kernel;
  t.avg_pool2d_backward = avg_pool2d_backward_kernel;
  t.adaptive_avg_pool2d_forward = adaptive_avg_pool2d_forward_kernel;
  t.adaptive_avg_pool2d_backward = adaptive_avg_pool2d_backward_kernel;
}

}  // namespace dl::cpu
