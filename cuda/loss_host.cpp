// The cross-entropy rows of the CUDA kernel table (kernels in cuda/loss.cu).
#include "cuda/host.h"

namespace dl::cuda::host {
namespace {

void cross_entropy_forward_kernel(const Tensor& losses, const Tensor& logits, const Tensor& target,
                                  const Tensor& weight, double ls) {
  check_device(logits, "cross_entropy");
  k::cross_entropy_forward(logits.dtype(), losses.raw_data(), logits.raw_data(), target.data_ptr<int64_t>(),
                           ptr_or_null(weight), logits.sizes()[0], logits.sizes()[1], ls);
}

void cross_entropy_backward_kernel(const Tensor& grad, const Tensor& grad_losses, const Tensor& logits,
                                   const Tensor& target, const Tensor& weight, double ls) {
  check_device(logits, "cross_entropy backward");
  k::cross_entropy_backward(logits.dtype(), grad.raw_data(), grad_losses.raw_data(), logits.raw_data(),
                            target.data_ptr<int64_t>(), ptr_or_null(weight), logits.sizes()[0], logits.sizes()[1], ls);
}

}  // namespace

void register_loss_kernels(KernelTable& t) {
  t.cross_entropy_forward = cross_entropy_forward_kernel;
  t.cross_entropy_backward = cross_entropy_backward_kernel;
}

}  // namespace dl::cuda::host
