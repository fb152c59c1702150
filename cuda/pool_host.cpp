// The pooling rows of the CUDA kernel table (kernels in cuda/pool.cu). The parameters arrive with
// their geometry filled in (tensor/op_defs.h), which is all the kernels need besides the pointers.
#include "cuda/host.h"

namespace dl::cuda::host {
namespace {

void max_pool2d_forward_kernel(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  check_device(out, "max_pool2d");
  k::max_pool2d_forward(x.dtype(), out.raw_data(), indices.data_ptr<int64_t>(), x.raw_data(), p);
}

void max_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Tensor& indices, const Pool2dParams& p) {
  check_device(gx, "max_pool2d backward");
  k::max_pool2d_backward(gx.dtype(), gx.raw_data(), gout.raw_data(), indices.data_ptr<int64_t>(), p);
}

void avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  check_device(out, "avg_pool2d");
  k::avg_pool2d_forward(x.dtype(), out.raw_data(), x.raw_data(), p);
}

void avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Pool2dParams& p) {
  check_device(gx, "avg_pool2d backward");
  k::avg_pool2d_backward(gx.dtype(), gx.raw_data(), gout.raw_data(), p);
}

void adaptive_avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  check_device(out, "adaptive_avg_pool2d");
  k::adaptive_avg_pool2d_forward(x.dtype(), out.raw_data(), x.raw_data(), p);
}

void adaptive_avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Pool2dParams& p) {
  check_device(gx, "adaptive_avg_pool2d backward");
  k::adaptive_avg_pool2d_backward(gx.dtype(), gx.raw_data(), gout.raw_data(), p);
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

}  // namespace dl::cuda::host
