// CPU 2-D pooling (max, avg, adaptive avg), forward and backward. Each (n, c) plane is
// independent, so planes are split over OpenMP threads; the window rules are PyTorch's:
// max pool pads with -inf (only real elements compete; NaN wins; first maximum on ties), avg
// pool clips its windows at the padded border and divides by the clipped or unclipped count,
// adaptive windows run from floor(i * In / Out) to ceil((i + 1) * In / Out).
#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace dl::cpu {
namespace {

struct Planes {
  int64_t planes, H, W, Ho, Wo;
};
Planes planes_of(const Tensor& in, const Tensor& out) {
  const auto& s = in.sizes();
  return {s[0] * s[1], s[2], s[3], out.sizes()[2], out.sizes()[3]};
}
// parallelise over planes when the whole op has enough work
inline bool worth_threads(const Planes& g, int64_t per_output) {
  return g.planes > 1 && g.planes * g.Ho * g.Wo * per_output > kParallelGrain;
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

// Any window, clipped to the image. The scan keeps a branch-free select on the comparison (on real
// data it is a coin flip the predictor loses) and only notes NaNs, which a rare second scan settles.
template <typename T>
inline void max_pool_window(const T* xp, const Planes& g, int64_t h0, int64_t h1, int64_t w0, int64_t w1, T& out,
                            int64_t& idx) {
  T best = -std::numeric_limits<T>::infinity();
  int64_t bi = h0 * g.W + w0;
  bool nan = false;
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const T v = xp[h * g.W + w];
      const bool take = v > best;
      bi = take ? h * g.W + w : bi;
      best = take ? v : best;
      nan |= v != v;
    }
  }
  if (nan) {  // the last NaN of the window wins, as in PyTorch
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w)
        if (std::isnan(xp[h * g.W + w])) best = xp[h * g.W + w], bi = h * g.W + w;
  }
  out = best;
  idx = bi;
}

template <typename T>
void max_pool_forward_typed(T* out, int64_t* idx, const T* x, const Planes& g, const ops::Pool2dParams& p) {
  // plain variables, not structured bindings: clang 14 cannot capture bindings in OpenMP regions
  const int64_t kh = p.kernel[0], kw = p.kernel[1], sh = p.stride[0], sw = p.stride[1];
  const int64_t ph = p.padding[0], pw = p.padding[1];
  const bool two_by_two = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0;
#pragma omp parallel for schedule(static) if (worth_threads(g, kh * kw))
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* xp = x + pl * g.H * g.W;
    T* op = out + pl * g.Ho * g.Wo;
    int64_t* ip = idx + pl * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; ++oh) {
      const int64_t h0 = std::max<int64_t>(oh * sh - ph, 0), h1 = std::min(oh * sh - ph + kh, g.H);
      // output columns [lo, hi) have whole windows inside the row (no clipping)
      int64_t lo = g.Wo, hi = g.Wo;
      if (two_by_two && 2 * oh + 1 < g.H) {
        // ceil_mode may add a last window that hangs over the edge: the generic loop takes it
        const int64_t whole = std::min(g.Wo, g.W / 2);
        max_pool_2x2_row(op + oh * g.Wo, ip + oh * g.Wo, xp + 2 * oh * g.W, xp + (2 * oh + 1) * g.W, whole,
                         2 * oh * g.W, g.W);
        lo = 0;
        hi = whole;
      }
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        if (ow == lo) ow = hi;
        if (ow >= g.Wo) break;
        const int64_t w0 = std::max<int64_t>(ow * sw - pw, 0), w1 = std::min(ow * sw - pw + kw, g.W);
        max_pool_window(xp, g, h0, h1, w0, w1, op[oh * g.Wo + ow], ip[oh * g.Wo + ow]);
      }
    }
  }
}

template <typename T>
void max_pool_backward_typed(T* gx, const T* gout, const int64_t* idx, const Planes& g) {
#pragma omp parallel for schedule(static) if (worth_threads(g, 2))
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    T* gp = gx + pl * g.H * g.W;
    std::fill(gp, gp + g.H * g.W, T(0));
    const T* go = gout + pl * g.Ho * g.Wo;
    const int64_t* ip = idx + pl * g.Ho * g.Wo;
    for (int64_t o = 0; o < g.Ho * g.Wo; ++o) gp[ip[o]] += go[o];
  }
}

void max_pool2d_forward_kernel(const Tensor& out, const Tensor& indices, const Tensor& x, const ops::Pool2dParams& p) {
  Planes g = planes_of(x, out);
  DL_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
    max_pool_forward_typed<scalar_t>(out.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), x.data_ptr<scalar_t>(), g, p);
  });
}

void max_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Tensor& indices) {
  Planes g = planes_of(gx, gout);
  DL_DISPATCH_FLOATING(gx.dtype(), "max_pool2d backward", [&] {
    max_pool_backward_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), g);
  });
}

// ---- avg pool ----------------------------------------------------------------------------------

// The clipped window of output (oh, ow) and its divisor, exactly as PyTorch's CPU kernel.
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
};
inline AvgWindow avg_window(int64_t oh, int64_t ow, const Planes& g, const ops::Pool2dParams& p) {
  int64_t h0 = oh * p.stride[0] - p.padding[0], w0 = ow * p.stride[1] - p.padding[1];
  int64_t h1 = std::min(h0 + p.kernel[0], g.H + p.padding[0]);
  int64_t w1 = std::min(w0 + p.kernel[1], g.W + p.padding[1]);
  const int64_t pool_size = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, g.H);
  w1 = std::min(w1, g.W);
  const int64_t inside = std::max<int64_t>(h1 - h0, 0) * std::max<int64_t>(w1 - w0, 0);
  return {h0, h1, w0, w1, p.count_include_pad ? pool_size : inside};
}

template <typename T>
void avg_pool_forward_typed(T* out, const T* x, const Planes& g, const ops::Pool2dParams& p) {
#pragma omp parallel for schedule(static) if (worth_threads(g, p.kernel[0] * p.kernel[1]))
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* xp = x + pl * g.H * g.W;
    T* op = out + pl * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; ++oh) {
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        const AvgWindow win = avg_window(oh, ow, g, p);
        if (win.h0 >= win.h1 || win.w0 >= win.w1) {
          op[oh * g.Wo + ow] = T(0);
          continue;
        }
        double s = 0;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) s += xp[h * g.W + w];
        op[oh * g.Wo + ow] = static_cast<T>(s / static_cast<double>(win.divisor));
      }
    }
  }
}

template <typename T>
void avg_pool_backward_typed(T* gx, const T* gout, const Planes& g, const ops::Pool2dParams& p) {
#pragma omp parallel for schedule(static) if (worth_threads(g, p.kernel[0] * p.kernel[1]))
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    T* gp = gx + pl * g.H * g.W;
    std::fill(gp, gp + g.H * g.W, T(0));
    const T* go = gout + pl * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; ++oh) {
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        const AvgWindow win = avg_window(oh, ow, g, p);
        if (win.h0 >= win.h1 || win.w0 >= win.w1) continue;
        const T share = static_cast<T>(go[oh * g.Wo + ow] / static_cast<double>(win.divisor));
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) gp[h * g.W + w] += share;
      }
    }
  }
}

void avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x, const ops::Pool2dParams& p) {
  Planes g = planes_of(x, out);
  DL_DISPATCH_FLOATING(x.dtype(), "avg_pool2d", [&] {
    avg_pool_forward_typed<scalar_t>(out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), g, p);
  });
}

void avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const ops::Pool2dParams& p) {
  Planes g = planes_of(gx, gout);
  DL_DISPATCH_FLOATING(gx.dtype(), "avg_pool2d backward", [&] {
    avg_pool_backward_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), g, p);
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
void adaptive_forward_typed(T* out, const T* x, const Planes& g) {
  if (g.Ho == 1 && g.Wo == 1) {  // global average pooling
    const int64_t hw = g.H * g.W;
#pragma omp parallel for schedule(static) if (g.planes > 1 && g.planes * hw > kParallelGrain)
    for (int64_t pl = 0; pl < g.planes; ++pl)
      out[pl] = static_cast<T>(plane_sum(x + pl * hw, hw) / static_cast<double>(hw));
    return;
  }
  // each output averages about (H / Ho) * (W / Wo) inputs
  const int64_t per = std::max<int64_t>(1, (g.H / std::max<int64_t>(g.Ho, 1) + 1) * (g.W / std::max<int64_t>(g.Wo, 1) + 1));
#pragma omp parallel for schedule(static) if (worth_threads(g, per))
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* xp = x + pl * g.H * g.W;
    T* op = out + pl * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; ++oh) {
      const int64_t h0 = window_start(oh, g.Ho, g.H), h1 = window_end(oh, g.Ho, g.H);
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        const int64_t w0 = window_start(ow, g.Wo, g.W), w1 = window_end(ow, g.Wo, g.W);
        double s = 0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) s += xp[h * g.W + w];
        op[oh * g.Wo + ow] = static_cast<T>(s / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

template <typename T>
void adaptive_backward_typed(T* gx, const T* gout, const Planes& g) {
  if (g.Ho == 1 && g.Wo == 1) {
    const int64_t hw = g.H * g.W;
#pragma omp parallel for schedule(static) if (g.planes > 1 && g.planes * hw > kParallelGrain)
    for (int64_t pl = 0; pl < g.planes; ++pl)
      plane_fill(gx + pl * hw, hw, static_cast<T>(gout[pl] / static_cast<double>(hw)));
    return;
  }
  const int64_t per = std::max<int64_t>(1, (g.H / std::max<int64_t>(g.Ho, 1) + 1) * (g.W / std::max<int64_t>(g.Wo, 1) + 1));
#pragma omp parallel for schedule(static) if (worth_threads(g, per))
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    T* gp = gx + pl * g.H * g.W;
    std::fill(gp, gp + g.H * g.W, T(0));
    const T* go = gout + pl * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; ++oh) {
      const int64_t h0 = window_start(oh, g.Ho, g.H), h1 = window_end(oh, g.Ho, g.H);
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        const int64_t w0 = window_start(ow, g.Wo, g.W), w1 = window_end(ow, g.Wo, g.W);
        const T share = static_cast<T>(go[oh * g.Wo + ow] / static_cast<double>((h1 - h0) * (w1 - w0)));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) gp[h * g.W + w] += share;
      }
    }
  }
}

void adaptive_avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x) {
  Planes g = planes_of(x, out);
  DL_DISPATCH_FLOATING(x.dtype(), "adaptive_avg_pool2d", [&] {
    adaptive_forward_typed<scalar_t>(out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), g);
  });
}

void adaptive_avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout) {
  Planes g = planes_of(gx, gout);
  DL_DISPATCH_FLOATING(gx.dtype(), "adaptive_avg_pool2d backward", [&] {
    adaptive_backward_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), g);
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
