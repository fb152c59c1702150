// 2-D pooling, forward and backward, with the CPU kernels' window rules (tensor/cpu/pool.cpp):
// max pool pads with -inf, the last NaN of a window wins, else its first maximum; avg pool clips
// its windows at the padded border and divides by the clipped or unclipped count; adaptive
// windows run from floor(i * In / Out) to ceil((i + 1) * In / Out).
//
// Forward: one thread per output. Backward of avg and adaptive pooling: one thread per input
// element gathers the outputs whose windows hold it, in the CPU's order (deterministic, no
// atomics). Backward of max pooling scatters through the saved indices with atomicAdd (the
// kernel table gives it no window geometry); overlapping windows make float sums order-dependent
// in the last bit.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

template <typename T>
__global__ void max_pool_forward_kernel(T* out, int64_t* idx, const T* x, Pool2dParams g) {
  KERNEL_LOOP(t, g.planes * g.Ho * g.Wo) {
    const int64_t ow = t % g.Wo, oh = (t / g.Wo) % g.Ho, pl = t / (g.Wo * g.Ho);
    const T* xp = x + pl * g.H * g.W;
    const int64_t hs = oh * g.stride[0] - g.padding[0], ws = ow * g.stride[1] - g.padding[1];  // window start
    const int64_t h0 = max(hs, int64_t(0)), h1 = min(hs + g.kernel[0], g.H);
    const int64_t w0 = max(ws, int64_t(0)), w1 = min(ws + g.kernel[1], g.W);
    T best = -INFINITY;
    int64_t bi = h0 * g.W + w0;
    bool nan = false;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) {
        const T v = xp[h * g.W + w];
        if (v > best) {
          best = v;
          bi = h * g.W + w;
        }
        nan |= v != v;
      }
    if (nan) {  // the last NaN of the window wins
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w)
          if (xp[h * g.W + w] != xp[h * g.W + w]) {
            best = xp[h * g.W + w];
            bi = h * g.W + w;
          }
    }
    out[t] = best;
    idx[t] = bi;
  }
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }

template <typename T>
__global__ void max_pool_backward_kernel(T* gx, const T* gout, const int64_t* idx, Pool2dParams g) {
  KERNEL_LOOP(t, g.planes * g.Ho * g.Wo) {
    const int64_t pl = t / (g.Ho * g.Wo);
    const int64_t i = idx[t];
    if (i >= 0 && i < g.H * g.W) atomic_add(gx + pl * g.H * g.W + i, gout[t]);
  }
}

struct Window {
  int64_t h0, h1, w0, w1, divisor;
};

// The clipped window of output (oh, ow) and its divisor, as the CPU kernel's avg_window.
__device__ __forceinline__ Window avg_window(int64_t oh, int64_t ow, const Pool2dParams& g) {
  int64_t h0 = oh * g.stride[0] - g.padding[0], w0 = ow * g.stride[1] - g.padding[1];
  int64_t h1 = min(h0 + g.kernel[0], g.H + g.padding[0]), w1 = min(w0 + g.kernel[1], g.W + g.padding[1]);
  const int64_t pool_size = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t(0));
  w0 = max(w0, int64_t(0));
  h1 = min(h1, g.H);
  w1 = min(w1, g.W);
  const int64_t inside = max(h1 - h0, int64_t(0)) * max(w1 - w0, int64_t(0));
  return {h0, h1, w0, w1, g.count_include_pad ? pool_size : inside};
}

template <typename T>
__global__ void avg_pool_forward_kernel(T* out, const T* x, Pool2dParams g) {
  KERNEL_LOOP(t, g.planes * g.Ho * g.Wo) {
    const int64_t ow = t % g.Wo, oh = (t / g.Wo) % g.Ho, pl = t / (g.Wo * g.Ho);
    const T* xp = x + pl * g.H * g.W;
    const Window win = avg_window(oh, ow, g);
    if (win.h0 >= win.h1 || win.w0 >= win.w1) {
      out[t] = T(0);
      continue;
    }
    double s = 0;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) s += static_cast<double>(xp[h * g.W + w]);
    out[t] = static_cast<T>(s / static_cast<double>(win.divisor));
  }
}

// Outputs oh whose (unclipped) window [oh * s - p, oh * s - p + k) contains h.
__device__ __forceinline__ void covering(int64_t h, int64_t k, int64_t s, int64_t p, int64_t out, int64_t& lo,
                                         int64_t& hi) {
  const int64_t a = h + p - k + 1;  // oh * s >= a
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  hi = min((h + p) / s + 1, out);  // oh * s <= h + p
}

template <typename T>
__global__ void avg_pool_backward_kernel(T* gx, const T* gout, Pool2dParams g) {
  KERNEL_LOOP(t, g.planes * g.H * g.W) {
    const int64_t w = t % g.W, h = (t / g.W) % g.H, pl = t / (g.W * g.H);
    const T* go = gout + pl * g.Ho * g.Wo;
    int64_t oh0, oh1, ow0, ow1;
    covering(h, g.kernel[0], g.stride[0], g.padding[0], g.Ho, oh0, oh1);
    covering(w, g.kernel[1], g.stride[1], g.padding[1], g.Wo, ow0, ow1);
    T v = T(0);
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const Window win = avg_window(oh, ow, g);
        if (h < win.h0 || h >= win.h1 || w < win.w0 || w >= win.w1) continue;
        v += static_cast<T>(static_cast<double>(go[oh * g.Wo + ow]) / static_cast<double>(win.divisor));
      }
    gx[t] = v;
  }
}

__device__ __forceinline__ int64_t window_start(int64_t i, int64_t out, int64_t in) { return (i * in) / out; }
__device__ __forceinline__ int64_t window_end(int64_t i, int64_t out, int64_t in) {
  return ((i + 1) * in + out - 1) / out;
}

template <typename T>
__global__ void adaptive_forward_kernel(T* out, const T* x, Pool2dParams g) {
  KERNEL_LOOP(t, g.planes * g.Ho * g.Wo) {
    const int64_t ow = t % g.Wo, oh = (t / g.Wo) % g.Ho, pl = t / (g.Wo * g.Ho);
    const T* xp = x + pl * g.H * g.W;
    const int64_t h0 = window_start(oh, g.Ho, g.H), h1 = window_end(oh, g.Ho, g.H);
    const int64_t w0 = window_start(ow, g.Wo, g.W), w1 = window_end(ow, g.Wo, g.W);
    double s = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) s += static_cast<double>(xp[h * g.W + w]);
    out[t] = static_cast<T>(s / static_cast<double>((h1 - h0) * (w1 - w0)));
  }
}

template <typename T>
__global__ void adaptive_backward_kernel(T* gx, const T* gout, Pool2dParams g) {
  KERNEL_LOOP(t, g.planes * g.H * g.W) {
    const int64_t w = t % g.W, h = (t / g.W) % g.H, pl = t / (g.W * g.H);
    const T* go = gout + pl * g.Ho * g.Wo;
    // windows containing h start at or before it: oh <= h * Ho / H rounded, a small range
    const int64_t oh0 = (h * g.Ho) / g.H, oh1 = min(((h + 1) * g.Ho + g.H - 1) / g.H, g.Ho);
    const int64_t ow0 = (w * g.Wo) / g.W, ow1 = min(((w + 1) * g.Wo + g.W - 1) / g.W, g.Wo);
    T v = T(0);
    for (int64_t oh = oh0 > 0 ? oh0 - 1 : 0; oh < oh1; ++oh) {
      const int64_t h0 = window_start(oh, g.Ho, g.H), h1 = window_end(oh, g.Ho, g.H);
      if (h < h0 || h >= h1) continue;
      for (int64_t ow = ow0 > 0 ? ow0 - 1 : 0; ow < ow1; ++ow) {
        const int64_t w0 = window_start(ow, g.Wo, g.W), w1 = window_end(ow, g.Wo, g.W);
        if (w < w0 || w >= w1) continue;
        v += static_cast<T>(static_cast<double>(go[oh * g.Wo + ow]) / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
    gx[t] = v;
  }
}

template <typename T>
void max_forward_typed(void* out, int64_t* idx, const void* x, const Pool2dParams& g) {
  const int64_t n = g.planes * g.Ho * g.Wo;
  if (n == 0) return;
  max_pool_forward_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(out), idx,
                                                                     static_cast<const T*>(x), g);
  DL_CUDA_LAUNCH_CHECK("max_pool_forward_kernel");
}

template <typename T>
void max_backward_typed(void* gx, const void* gout, const int64_t* idx, const Pool2dParams& g) {
  const int64_t n_in = g.planes * g.H * g.W, n_out = g.planes * g.Ho * g.Wo;
  if (n_in == 0) return;
  DL_CUDA_CHECK(cudaMemsetAsync(gx, 0, static_cast<size_t>(n_in) * sizeof(T), stream()));
  if (n_out == 0) return;
  max_pool_backward_kernel<T><<<grid_1d(n_out), kThreads, 0, stream()>>>(static_cast<T*>(gx),
                                                                          static_cast<const T*>(gout), idx, g);
  DL_CUDA_LAUNCH_CHECK("max_pool_backward_kernel");
}

template <typename T>
void avg_forward_typed(void* out, const void* x, const Pool2dParams& g) {
  const int64_t n = g.planes * g.Ho * g.Wo;
  if (n == 0) return;
  avg_pool_forward_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(x), g);
  DL_CUDA_LAUNCH_CHECK("avg_pool_forward_kernel");
}

template <typename T>
void avg_backward_typed(void* gx, const void* gout, const Pool2dParams& g) {
  const int64_t n = g.planes * g.H * g.W;
  if (n == 0) return;
  avg_pool_backward_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(gx), static_cast<const T*>(gout),
                                                                      g);
  DL_CUDA_LAUNCH_CHECK("avg_pool_backward_kernel");
}

template <typename T>
void adaptive_forward_typed(void* out, const void* x, const Pool2dParams& g) {
  const int64_t n = g.planes * g.Ho * g.Wo;
  if (n == 0) return;
  adaptive_forward_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(x), g);
  DL_CUDA_LAUNCH_CHECK("adaptive_forward_kernel");
}

template <typename T>
void adaptive_backward_typed(void* gx, const void* gout, const Pool2dParams& g) {
  const int64_t n = g.planes * g.H * g.W;
  if (n == 0) return;
  adaptive_backward_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(gx), static_cast<const T*>(gout),
                                                                      g);
  DL_CUDA_LAUNCH_CHECK("adaptive_backward_kernel");
}

}  // namespace

void max_pool2d_forward(DType dt, void* out, int64_t* indices, const void* x, const Pool2dParams& g) {
  KDISPATCH_FLOATING(dt, "max_pool2d", max_forward_typed, out, indices, x, g);
}
void max_pool2d_backward(DType dt, void* grad_x, const void* grad_out, const int64_t* indices, const Pool2dParams& g) {
  KDISPATCH_FLOATING(dt, "max_pool2d backward", max_backward_typed, grad_x, grad_out, indices, g);
}
void avg_pool2d_forward(DType dt, void* out, const void* x, const Pool2dParams& g) {
  KDISPATCH_FLOATING(dt, "avg_pool2d", avg_forward_typed, out, x, g);
}
void avg_pool2d_backward(DType dt, void* grad_x, const void* grad_out, const Pool2dParams& g) {
  KDISPATCH_FLOATING(dt, "avg_pool2d backward", avg_backward_typed, grad_x, grad_out, g);
}
void adaptive_avg_pool2d_forward(DType dt, void* out, const void* x, const Pool2dParams& g) {
  KDISPATCH_FLOATING(dt, "adaptive_avg_pool2d", adaptive_forward_typed, out, x, g);
}
void adaptive_avg_pool2d_backward(DType dt, void* grad_x, const void* grad_out, const Pool2dParams& g) {
  KDISPATCH_FLOATING(dt, "adaptive_avg_pool2d backward", adaptive_backward_typed, grad_x, grad_out, g);
}

}  // namespace dl::cuda::k
