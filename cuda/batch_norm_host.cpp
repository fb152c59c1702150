// The batch-norm rows of the CUDA kernel table: cuDNN (cuda/cudnn.cpp) when the BatchNorm family's
// backend says so and cuDNN takes the case, else the hand-written kernels of cuda/batch_norm.cu.
#include "cuda/host.h"

namespace dl::cuda::host {
namespace {

struct NCS {
  int64_t N, C, S;
};
NCS ncs_of(const Tensor& x) {
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.sizes()[d];
  return {x.sizes()[0], x.sizes()[1], S};
}

void batch_norm_forward_kernel(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, bool training, double momentum, double eps) {
  check_device(out, "batch_norm");
  if (get_backend(OpFamily::BatchNorm) == Backend::Library &&
      cudnn_batch_norm_forward(out, mean, invstd, x, weight, bias, running_mean, running_var, training, momentum, eps))
    return;
  const NCS d = ncs_of(x);
  k::batch_norm_forward(x.dtype(), out.raw_data(), mean.raw_data(), invstd.raw_data(), x.raw_data(),
                        ptr_or_null(weight), ptr_or_null(bias), mut_ptr_or_null(running_mean),
                        mut_ptr_or_null(running_var), d.N, d.C, d.S, training, momentum, eps);
}

void batch_norm_backward_kernel(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                                const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                const Tensor& invstd, bool training) {
  check_device(x, "batch_norm backward");
  if (get_backend(OpFamily::BatchNorm) == Backend::Library &&
      cudnn_batch_norm_backward(grad_x, grad_w, grad_b, grad_out, x, weight, mean, invstd, training))
    return;
  const NCS d = ncs_of(x);
  k::batch_norm_backward(x.dtype(), mut_ptr_or_null(grad_x), mut_ptr_or_null(grad_w), mut_ptr_or_null(grad_b),
                         grad_out.raw_data(), x.raw_data(), ptr_or_null(weight), mean.raw_data(), invstd.raw_data(),
                         d.N, d.C, d.S, training);
}

}  // namespace

void register_batch_norm_kernels(KernelTable& t) {
  t.batch_norm_forward = batch_norm_forward_kernel;
  t.batch_norm_backward = batch_norm_backward_kernel;
}

}  // namespace dl::cuda::host
