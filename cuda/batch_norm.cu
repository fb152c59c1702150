// Hand-written batch norm over dim 1 of x viewed as (N, C, S), forward and backward.
//
// Training statistics are Welford's: every thread keeps (count, mean, M2) in double over its
// elements; threads, then blocks, are merged with Chan's formula, so a large mean never cancels
// the variance away. A channel is split over several blocks when there are few channels (so
// C = 64 still fills the GPU); the splits are merged by one thread per channel in a fixed order,
// so the result is deterministic. Then one elementwise pass normalises, with the output
// arithmetic of the CPU kernel (tensor/cpu/batch_norm.cpp): y = (x - mean) * (invstd * w) + b,
// each factor rounded to T as there.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

struct Welford {
  double n, mean, m2;
};

__device__ __forceinline__ Welford merge(const Welford& a, const Welford& b) {
  const double n = a.n + b.n;
  if (n == 0) return a;
  const double delta = b.mean - a.mean;
  const double fb = b.n / n;
  return {n, a.mean + delta * fb, a.m2 + b.m2 + delta * delta * a.n * fb};
}

__device__ __forceinline__ Welford shfl_down(const Welford& w, int off) {
  return {__shfl_down_sync(0xffffffffu, w.n, off), __shfl_down_sync(0xffffffffu, w.mean, off),
          __shfl_down_sync(0xffffffffu, w.m2, off)};
}

// Merge across the block; thread 0 gets the result.
__device__ Welford block_merge(Welford w) {
  __shared__ Welford scratch[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int off = 16; off > 0; off >>= 1) w = merge(w, shfl_down(w, off));
  if (lane == 0) scratch[warp] = w;
  __syncthreads();
  if (warp == 0) {
    w = lane < nwarps ? scratch[lane] : Welford{0, 0, 0};
    for (int off = 16; off > 0; off >>= 1) w = merge(w, shfl_down(w, off));
  }
  __syncthreads();
  return w;
}

struct Split {
  int64_t per;     // elements of a channel per split
  int64_t splits;  // blocks per channel
};

// Block (c, split) covers elements j in [split * per, (split + 1) * per) of channel c, where
// element j of a channel is x[(n * C + c) * S + s] with n = j / S, s = j % S.
template <typename T>
__global__ void welford_partial_kernel(const T* x, Welford* partial, int64_t N, int64_t C, int64_t S, Split sp) {
  const int64_t M = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const int64_t j0 = blockIdx.y * sp.per, j1 = min(M, j0 + sp.per);
    Welford w{0, 0, 0};
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
      const int64_t n = j / S, s = j - n * S;
      const double v = static_cast<double>(x[(n * C + c) * S + s]);
      w.n += 1;
      const double delta = v - w.mean;
      w.mean += delta / w.n;
      w.m2 += delta * (v - w.mean);
    }
    w = block_merge(w);
    if (threadIdx.x == 0) partial[c * sp.splits + blockIdx.y] = w;
  }
}

// Per channel: merges the splits, writes mean / invstd, updates the running statistics, and
// leaves the normalisation's factors (mean, invstd * w rounded to T) in coef[2 C].
template <typename T>
__global__ void forward_finalize_kernel(const Welford* partial, Split sp, T* mean_out, T* invstd_out, const T* w,
                                        T* rm, T* rv, T* coef, int64_t C, int64_t M, double momentum, double eps) {
  KERNEL_LOOP(c, C) {
    Welford acc{0, 0, 0};
    for (int64_t s = 0; s < sp.splits; ++s) acc = merge(acc, partial[c * sp.splits + s]);
    const double mean = acc.mean;
    const double var = acc.n > 0 ? acc.m2 / acc.n : 0.0;  // biased
    const double invstd = 1.0 / sqrt(var + eps);
    if (rm) rm[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(rm[c]) + momentum * mean);
    if (rv) {
      const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
      rv[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(rv[c]) + momentum * unbiased);
    }
    mean_out[c] = static_cast<T>(mean);
    invstd_out[c] = static_cast<T>(invstd);
    coef[c] = static_cast<T>(mean);
    coef[C + c] = static_cast<T>(invstd * (w ? static_cast<double>(w[c]) : 1.0));
  }
}

template <typename T>
__global__ void eval_stats_kernel(T* mean_out, T* invstd_out, const T* rm, const T* rv, const T* w, T* coef, int64_t C,
                                  double eps) {
  KERNEL_LOOP(c, C) {
    const double mean = static_cast<double>(rm[c]);
    const double invstd = 1.0 / sqrt(static_cast<double>(rv[c]) + eps);
    mean_out[c] = static_cast<T>(mean);
    invstd_out[c] = static_cast<T>(invstd);
    if (coef) {
      coef[c] = static_cast<T>(mean);
      coef[C + c] = static_cast<T>(invstd * (w ? static_cast<double>(w[c]) : 1.0));
    }
  }
}

template <typename T>
__global__ void normalize_kernel(T* out, const T* x, const T* coef, const T* b, int64_t C, int64_t S, int64_t total) {
  KERNEL_LOOP(i, total) {
    const int64_t c = (i / S) % C;
    out[i] = (x[i] - coef[c]) * coef[C + c] + (b ? b[c] : T(0));
  }
}

// ---- backward ------------------------------------------------------------------------------------

struct GradSums {
  double g, gx;  // sum g, sum g * (x - mean)
};

template <typename T>
__global__ void grad_partial_kernel(const T* go, const T* x, const T* mean, GradSums* partial, int64_t N, int64_t C,
                                    int64_t S, Split sp) {
  __shared__ double scratch[32];
  const int64_t M = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const double m = static_cast<double>(mean[c]);
    const int64_t j0 = blockIdx.y * sp.per, j1 = min(M, j0 + sp.per);
    double sg = 0, sgx = 0;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
      const int64_t n = j / S, s = j - n * S;
      const int64_t at = (n * C + c) * S + s;
      const double g = static_cast<double>(go[at]);
      sg += g;
      sgx += g * (static_cast<double>(x[at]) - m);
    }
    sg = block_reduce(sg, SumOp{}, 0.0, scratch);
    sgx = block_reduce(sgx, SumOp{}, 0.0, scratch);
    if (threadIdx.x == 0) partial[c * sp.splits + blockIdx.y] = {sg, sgx};
  }
}

// Per channel: grad_w, grad_b, and the factors of grad_x in coef[4 C] = (a, a k, c0, mean) with
//   training: gx = a g - a k (x - mean) + c0,  a = invstd w, k = invstd^2 sum(g (x - mean)) / M,
//             c0 = -a sum(g) / M;   eval: gx = a g.
template <typename T>
__global__ void backward_finalize_kernel(const GradSums* partial, Split sp, const T* w, const T* mean,
                                         const T* invstd, T* gw, T* gb, T* coef, int64_t C, int64_t M, bool training,
                                         bool have_sums) {
  KERNEL_LOOP(c, C) {
    double sg = 0, sgx = 0;
    if (have_sums)
      for (int64_t s = 0; s < sp.splits; ++s) {
        sg += partial[c * sp.splits + s].g;
        sgx += partial[c * sp.splits + s].gx;
      }
    const double is = static_cast<double>(invstd[c]);
    if (gw) gw[c] = static_cast<T>(sgx * is);
    if (gb) gb[c] = static_cast<T>(sg);
    if (!coef) continue;
    const double a = is * (w ? static_cast<double>(w[c]) : 1.0);
    coef[c] = static_cast<T>(a);
    if (training) {
      const double k = is * is * sgx / static_cast<double>(M);
      coef[C + c] = static_cast<T>(a * k);
      coef[2 * C + c] = static_cast<T>(-a * sg / static_cast<double>(M));
      coef[3 * C + c] = mean[c];
    }
  }
}

template <typename T>
__global__ void grad_input_kernel(T* gx, const T* go, const T* x, const T* coef, int64_t C, int64_t S, int64_t total,
                                  bool training) {
  KERNEL_LOOP(i, total) {
    const int64_t c = (i / S) % C;
    gx[i] = training ? coef[c] * go[i] - coef[C + c] * (x[i] - coef[3 * C + c]) + coef[2 * C + c] : coef[c] * go[i];
  }
}

Split split_for(int64_t M, int64_t C) {
  constexpr int64_t kMinPerBlock = 4096;
  const int64_t want = (4 * detail::sm_count() + C - 1) / C;  // blocks per channel to fill the GPU
  const int64_t most = (M + kMinPerBlock - 1) / kMinPerBlock;
  int64_t splits = want < most ? want : most;
  if (splits < 1) splits = 1;
  if (splits > 65535) splits = 65535;
  return {(M + splits - 1) / splits, splits};
}

dim3 channel_grid(int64_t C, const Split& sp) {
  return dim3(static_cast<unsigned>(C < 0x7fffffff ? C : 0x7fffffff), static_cast<unsigned>(sp.splits));
}

template <typename T>
void forward_typed(void* out, void* mean, void* invstd, const void* x, const void* w, const void* b, void* rm,
                   void* rv, int64_t N, int64_t C, int64_t S, bool training, double momentum, double eps) {
  const int64_t M = N * S, total = N * C * S;
  if (C == 0) return;
  detail::Workspace coef(2 * C * sizeof(T));
  if (training) {
    const Split sp = split_for(M, C);
    detail::Workspace partial(static_cast<size_t>(C * sp.splits) * sizeof(Welford));
    welford_partial_kernel<T><<<channel_grid(C, sp), kThreads, 0, stream()>>>(static_cast<const T*>(x),
                                                                                partial.as<Welford>(), N, C, S, sp);
    DL_CUDA_LAUNCH_CHECK("welford_partial_kernel");
    forward_finalize_kernel<T><<<grid_1d(C), kThreads, 0, stream()>>>(
        partial.as<Welford>(), sp, static_cast<T*>(mean), static_cast<T*>(invstd), static_cast<const T*>(w),
        static_cast<T*>(rm), static_cast<T*>(rv), coef.as<T>(), C, M, momentum, eps);
    DL_CUDA_LAUNCH_CHECK("forward_finalize_kernel");
  } else {
    eval_stats_kernel<T><<<grid_1d(C), kThreads, 0, stream()>>>(static_cast<T*>(mean), static_cast<T*>(invstd),
                                                                 static_cast<const T*>(rm), static_cast<const T*>(rv),
                                                                 static_cast<const T*>(w), coef.as<T>(), C, eps);
    DL_CUDA_LAUNCH_CHECK("eval_stats_kernel");
  }
  if (total == 0) return;
  normalize_kernel<T><<<grid_1d(total), kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(x),
                                                                  coef.as<T>(), static_cast<const T*>(b), C, S, total);
  DL_CUDA_LAUNCH_CHECK("normalize_kernel");
}

template <typename T>
void backward_typed(void* gx, void* gw, void* gb, const void* go, const void* x, const void* w, const void* mean,
                    const void* invstd, int64_t N, int64_t C, int64_t S, bool training) {
  const int64_t M = N * S, total = N * C * S;
  if (C == 0) return;
  const bool need_sums = gw || gb || (gx && training);
  const Split sp = split_for(M, C);
  detail::Workspace partial(need_sums ? static_cast<size_t>(C * sp.splits) * sizeof(GradSums) : 0);
  detail::Workspace coef(gx ? 4 * C * sizeof(T) : 0);
  if (need_sums) {
    grad_partial_kernel<T><<<channel_grid(C, sp), kThreads, 0, stream()>>>(
        static_cast<const T*>(go), static_cast<const T*>(x), static_cast<const T*>(mean), partial.as<GradSums>(), N, C,
        S, sp);
    DL_CUDA_LAUNCH_CHECK("grad_partial_kernel");
  }
  backward_finalize_kernel<T><<<grid_1d(C), kThreads, 0, stream()>>>(
      partial.as<GradSums>(), sp, static_cast<const T*>(w), static_cast<const T*>(mean), static_cast<const T*>(invstd),
      static_cast<T*>(gw), static_cast<T*>(gb), coef.as<T>(), C, M, training, need_sums);
  DL_CUDA_LAUNCH_CHECK("backward_finalize_kernel");
  if (!gx || total == 0) return;
  grad_input_kernel<T><<<grid_1d(total), kThreads, 0, stream()>>>(static_cast<T*>(gx), static_cast<const T*>(go),
                                                                   static_cast<const T*>(x), coef.as<T>(), C, S, total,
                                                                   training);
  DL_CUDA_LAUNCH_CHECK("grad_input_kernel");
}

template <typename T>
void eval_stats_typed(void* mean, void* invstd, const void* rm, const void* rv, int64_t C, double eps) {
  if (C == 0) return;
  eval_stats_kernel<T><<<grid_1d(C), kThreads, 0, stream()>>>(static_cast<T*>(mean), static_cast<T*>(invstd),
                                                               static_cast<const T*>(rm), static_cast<const T*>(rv),
                                                               nullptr, nullptr, C, eps);
  DL_CUDA_LAUNCH_CHECK("eval_stats_kernel");
}

}  // namespace

void batch_norm_forward(DType dt, void* out, void* mean, void* invstd, const void* x, const void* weight,
                        const void* bias, void* running_mean, void* running_var, int64_t N, int64_t C, int64_t S,
                        bool training, double momentum, double eps) {
  KDISPATCH_FLOATING(dt, "batch_norm", forward_typed, out, mean, invstd, x, weight, bias, running_mean, running_var, N,
                     C, S, training, momentum, eps);
}

void batch_norm_backward(DType dt, void* grad_x, void* grad_w, void* grad_b, const void* grad_out, const void* x,
                         const void* weight, const void* mean, const void* invstd, int64_t N, int64_t C, int64_t S,
                         bool training) {
  KDISPATCH_FLOATING(dt, "batch_norm backward", backward_typed, grad_x, grad_w, grad_b, grad_out, x, weight, mean,
                     invstd, N, C, S, training);
}

void batch_norm_eval_stats(DType dt, void* mean, void* invstd, const void* running_mean, const void* running_var,
                           int64_t C, double eps) {
  KDISPATCH_FLOATING(dt, "batch_norm", eval_stats_typed, mean, invstd, running_mean, running_var, C, eps);
}

}  // namespace dl::cuda::k
