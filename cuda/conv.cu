// The pieces of the hand-written convolution (cuda/conv_host.cpp does the GEMMs): im2col and its
// adjoint col2im over a chunk of images, the bias add, and the bias gradient.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

// One thread per (image, channel, output pixel) writes that pixel's kh * kw taps.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ col, Conv2dParams g, int64_t n0, int64_t nb,
                              int64_t cns, int64_t crs) {
  const int64_t L = g.Ho * g.Wo;
  KERNEL_LOOP(t, nb * g.C * L) {
    const int64_t l = t % L;
    const int64_t c = (t / L) % g.C;
    const int64_t n = t / (L * g.C);
    const int64_t oh = l / g.Wo, ow = l - oh * g.Wo;
    const T* xc = x + ((n0 + n) * g.C + c) * g.H * g.W;
    T* out = col + n * cns + (c * g.kh * g.kw) * crs + l;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      const int64_t ih = oh * g.stride[0] - g.padding[0] + ki * g.dilation[0];
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const int64_t iw = ow * g.stride[1] - g.padding[1] + kj * g.dilation[1];
        const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
        out[(ki * g.kw + kj) * crs] = inside ? xc[ih * g.W + iw] : T(0);
      }
    }
  }
}

// One thread per input element gathers every column entry that read it.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ col, T* __restrict__ x, Conv2dParams g, int64_t n0, int64_t nb,
                              int64_t cns, int64_t crs) {
  const int64_t HW = g.H * g.W;
  KERNEL_LOOP(t, nb * g.C * HW) {
    const int64_t hw = t % HW;
    const int64_t c = (t / HW) % g.C;
    const int64_t n = t / (HW * g.C);
    const int64_t h = hw / g.W, w = hw - h * g.W;
    const T* cc = col + n * cns + (c * g.kh * g.kw) * crs;
    T v = T(0);
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      const int64_t hh = h + g.padding[0] - ki * g.dilation[0];  // = oh * sh
      if (hh < 0 || hh % g.stride[0] != 0) continue;
      const int64_t oh = hh / g.stride[0];
      if (oh >= g.Ho) continue;
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const int64_t ww = w + g.padding[1] - kj * g.dilation[1];
        if (ww < 0 || ww % g.stride[1] != 0) continue;
        const int64_t ow = ww / g.stride[1];
        if (ow >= g.Wo) continue;
        v += cc[(ki * g.kw + kj) * crs + oh * g.Wo + ow];
      }
    }
    x[((n0 + n) * g.C + c) * HW + hw] = v;
  }
}

template <typename T>
__global__ void add_bias_kernel(T* out, const T* bias, int64_t N, int64_t C, int64_t S) {
  KERNEL_LOOP(i, N * C * S) out[i] += bias[(i / S) % C];
}

template <typename T>
__global__ void channel_sum_kernel(T* out, const T* in, int64_t N, int64_t C, int64_t S) {
  __shared__ acc_t<T> scratch[32];
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    acc_t<T> s = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* p = in + (n * C + c) * S;
      for (int64_t i = threadIdx.x; i < S; i += blockDim.x) s += static_cast<acc_t<T>>(p[i]);
    }
    s = block_reduce(s, SumOp{}, acc_t<T>(0), scratch);
    if (threadIdx.x == 0) out[c] = static_cast<T>(s);
  }
}

template <typename T>
void im2col_typed(const void* x, void* col, const Conv2dParams& g, int64_t n0, int64_t nb, int64_t cns, int64_t crs) {
  const int64_t work = nb * g.C * g.Ho * g.Wo;
  if (work == 0) return;
  im2col_kernel<T><<<grid_1d(work), kThreads, 0, stream()>>>(static_cast<const T*>(x), static_cast<T*>(col), g, n0, nb,
                                                              cns, crs);
  DL_CUDA_LAUNCH_CHECK("im2col_kernel");
}

template <typename T>
void col2im_typed(const void* col, void* x, const Conv2dParams& g, int64_t n0, int64_t nb, int64_t cns, int64_t crs) {
  const int64_t work = nb * g.C * g.H * g.W;
  if (work == 0) return;
  col2im_kernel<T><<<grid_1d(work), kThreads, 0, stream()>>>(static_cast<const T*>(col), static_cast<T*>(x), g, n0, nb,
                                                              cns, crs);
  DL_CUDA_LAUNCH_CHECK("col2im_kernel");
}

template <typename T>
void add_bias_typed(void* out, const void* bias, int64_t N, int64_t C, int64_t S) {
  if (N * C * S == 0) return;
  add_bias_kernel<T><<<grid_1d(N * C * S), kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(bias),
                                                                     N, C, S);
  DL_CUDA_LAUNCH_CHECK("add_bias_kernel");
}

template <typename T>
void channel_sum_typed(void* out, const void* in, int64_t N, int64_t C, int64_t S) {
  if (C == 0) return;
  const unsigned blocks = static_cast<unsigned>(C < 65535 ? C : 65535);
  channel_sum_kernel<T><<<blocks, kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(in), N, C, S);
  DL_CUDA_LAUNCH_CHECK("channel_sum_kernel");
}

}  // namespace

void im2col(DType dt, const void* x, void* col, const Conv2dParams& g, int64_t n0, int64_t nb, int64_t col_n_stride,
            int64_t col_row_stride) {
  KDISPATCH_FLOATING(dt, "im2col", im2col_typed, x, col, g, n0, nb, col_n_stride, col_row_stride);
}

void col2im(DType dt, const void* col, void* x, const Conv2dParams& g, int64_t n0, int64_t nb, int64_t col_n_stride,
            int64_t col_row_stride) {
  KDISPATCH_FLOATING(dt, "col2im", col2im_typed, col, x, g, n0, nb, col_n_stride, col_row_stride);
}

void add_channel_bias(DType dt, void* out, const void* bias, int64_t N, int64_t C, int64_t S) {
  KDISPATCH_FLOATING(dt, "conv2d bias", add_bias_typed, out, bias, N, C, S);
}

void channel_sum(DType dt, void* out, const void* in, int64_t N, int64_t C, int64_t S) {
  KDISPATCH_FLOATING(dt, "conv2d bias backward", channel_sum_typed, out, in, N, C, S);
}

}  // namespace dl::cuda::k
