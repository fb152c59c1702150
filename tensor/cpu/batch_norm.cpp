// CPU batch norm over dim 1 of x viewed as (N, C, S), forward and backward. Channels are split
// over OpenMP threads; each channel's statistics take one pass over its N planes (sums of the
// values shifted by the channel's first element, in double, so a large mean does not cancel the
// variance away), and the output takes a second.
#include <algorithm>
#include <cmath>

#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace dl::cpu {
namespace {

struct NCS {
  int64_t N, C, S;
};
NCS ncs_of(const Tensor& x) {
  const auto& s = x.sizes();
  int64_t S = 1;
  for (size_t d = 2; d < s.size(); ++d) S *= s[d];
  return {s[0], s[1], S};
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}
template <typename T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Channel sums in double over independent lanes: a single running double sum is a chain of
// dependent adds (4 cycles each) that the compiler may not reorder; 8 lanes vectorise.
constexpr int kLanes = 8;

// s += sum(p - shift), ss += sum((p - shift)^2)
template <typename T>
void sum_shifted(const T* p, int64_t n, double shift, double& s, double& ss) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double v = static_cast<double>(p[i + j]) - shift;
      a[j] += v;
      b[j] += v * v;
    }
  }
  for (; i < n; ++i) {
    const double v = static_cast<double>(p[i]) - shift;
    a[0] += v;
    b[0] += v * v;
  }
  for (int j = 0; j < kLanes; ++j) s += a[j], ss += b[j];
}

// sg += sum(g), sgx += sum(g * (x - mean))
template <typename T>
void sum_grad(const T* g, const T* x, int64_t n, double mean, double& sg, double& sgx) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double gv = static_cast<double>(g[i + j]);
      a[j] += gv;
      b[j] += gv * (static_cast<double>(x[i + j]) - mean);
    }
  }
  for (; i < n; ++i) {
    const double gv = static_cast<double>(g[i]);
    a[0] += gv;
    b[0] += gv * (static_cast<double>(x[i]) - mean);
  }
  for (int j = 0; j < kLanes; ++j) sg += a[j], sgx += b[j];
}

template <typename T>
void forward_typed(T* out, T* mean_out, T* invstd_out, const T* x, const T* w, const T* b, T* rm, T* rv, NCS d,
                   bool training, double momentum, double eps) {
  const int64_t M = d.N * d.S;  // values per channel
#pragma omp parallel for schedule(static) if (d.C > 1 && d.N * d.C * d.S > kParallelGrain)
  for (int64_t c = 0; c < d.C; ++c) {
    double mean, invstd;
    if (training) {
      const double shift = M > 0 ? static_cast<double>(x[c * d.S]) : 0.0;
      double s = 0, ss = 0;
      if (d.S == 1) {  // (N, C): the channel is strided; gather it lane-free
        for (int64_t n = 0; n < d.N; ++n) {
          const double v = static_cast<double>(x[n * d.C + c]) - shift;
          s += v;
          ss += v * v;
        }
      } else {
        for (int64_t n = 0; n < d.N; ++n) sum_shifted(x + (n * d.C + c) * d.S, d.S, shift, s, ss);
      }
      const double dm = s / static_cast<double>(M);
      const double var = std::max(ss / static_cast<double>(M) - dm * dm, 0.0);  // biased
      mean = shift + dm;
      invstd = 1.0 / std::sqrt(var + eps);
      if (rm) rm[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(rm[c]) + momentum * mean);
      if (rv) {
        const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
        rv[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(rv[c]) + momentum * unbiased);
      }
    } else {
      mean = static_cast<double>(rm[c]);
      invstd = 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps);
    }
    mean_out[c] = static_cast<T>(mean);
    invstd_out[c] = static_cast<T>(invstd);
    // y = (x - mean) * (invstd * w) + b; centring first keeps a large mean from cancelling
    const T mt = static_cast<T>(mean);
    const T scale = static_cast<T>(invstd * (w ? static_cast<double>(w[c]) : 1.0));
    const T offset = b ? b[c] : T(0);
    for (int64_t n = 0; n < d.N; ++n) {
      const T* p = x + (n * d.C + c) * d.S;
      T* o = out + (n * d.C + c) * d.S;
#pragma omp simd  // out never aliases the inputs
      for (int64_t i = 0; i < d.S; ++i) o[i] = (p[i] - mt) * scale + offset;
    }
  }
}

template <typename T>
void backward_typed(T* gx, T* gw, T* gb, const T* go, const T* x, const T* w, const T* mean_in, const T* invstd_in,
                    NCS d, bool training) {
  const int64_t M = d.N * d.S;
  const bool need_sums = gw || gb || (gx && training);
#pragma omp parallel for schedule(static) if (d.C > 1 && d.N * d.C * d.S > kParallelGrain)
  for (int64_t c = 0; c < d.C; ++c) {
    const double mean = static_cast<double>(mean_in[c]);
    const double invstd = static_cast<double>(invstd_in[c]);
    // sum of g and of g * (x - mean) over the channel
    double sg = 0, sgx = 0;
    if (need_sums) {
      for (int64_t n = 0; n < d.N; ++n) {
        const int64_t at = (n * d.C + c) * d.S;
        sum_grad(go + at, x + at, d.S, mean, sg, sgx);
      }
    }
    if (gw) gw[c] = static_cast<T>(sgx * invstd);
    if (gb) gb[c] = static_cast<T>(sg);
    if (!gx) continue;
    const double a = invstd * (w ? static_cast<double>(w[c]) : 1.0);
    if (training) {
      // gx = a * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mean) * invstd
      const double k = invstd * invstd * sgx / static_cast<double>(M);
      const T ta = static_cast<T>(a);
      const T tk = static_cast<T>(a * k);
      const T tc = static_cast<T>(-a * sg / static_cast<double>(M));
      const T mt = static_cast<T>(mean);
      for (int64_t n = 0; n < d.N; ++n) {
        const T* g = go + (n * d.C + c) * d.S;
        const T* p = x + (n * d.C + c) * d.S;
        T* o = gx + (n * d.C + c) * d.S;
#pragma omp simd  // out never aliases the inputs
        for (int64_t i = 0; i < d.S; ++i) o[i] = ta * g[i] - tk * (p[i] - mt) + tc;
      }
    } else {
      const T ta = static_cast<T>(a);
      for (int64_t n = 0; n < d.N; ++n) {
        const T* g = go + (n * d.C + c) * d.S;
        T* o = gx + (n * d.C + c) * d.S;
#pragma omp simd  // out never aliases the inputs
        for (int64_t i = 0; i < d.S; ++i) o[i] = ta * g[i];
      }
    }
  }
}

void batch_norm_forward_kernel(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, bool training, double momentum, double eps) {
  DL_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    forward_typed<scalar_t>(out.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), invstd.data_ptr<scalar_t>(),
                            x.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(weight), ptr_or_null<scalar_t>(bias),
                            mut_ptr_or_null<scalar_t>(running_mean), mut_ptr_or_null<scalar_t>(running_var),
                            ncs_of(x), training, momentum, eps);
  });
}

void batch_norm_backward_kernel(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                                const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                const Tensor& invstd, bool training) {
  DL_DISPATCH_FLOATING(x.dtype(), "batch_norm backward", [&] {
    backward_typed<scalar_t>(mut_ptr_or_null<scalar_t>(grad_x), mut_ptr_or_null<scalar_t>(grad_w),
                             mut_ptr_or_null<scalar_t>(grad_b), grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                             ptr_or_null<scalar_t>(weight), mean.data_ptr<scalar_t>(), invstd.data_ptr<scalar_t>(),
                             ncs_of(x), training);
  });
}

}  // namespace

void register_batch_norm_kernels(KernelTable& t) {
  t.batch_norm_forward = batch_norm_forward_kernel;
  t.batch_norm_backward = batch_norm_backward_kernel;
}

}  // namespace dl::cpu
