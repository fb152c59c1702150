// The elementwise rows of the CUDA kernel table: unary and binary ops, pow, where, device copies
// and fill (kernels in cuda/elementwise.cu and cuda/binary.cu).
#include "cuda/host.h"

namespace dl::cuda::host {
namespace {

void unary_kernel(ops::UnaryOp op, const Tensor& out, const Tensor& in, const ops::UnaryArgs& args) {
  check_device(out, "unary op");
  k::unary(op, in.dtype(), out.raw_data(), in.raw_data(), make_iter({&out, &in}), args);
}

void pow_kernel(const Tensor& out, const Tensor& in, double e) {
  check_device(out, "pow");
  k::pow_scalar(in.dtype(), out.raw_data(), in.raw_data(), e, make_iter({&out, &in}));
}

void binary_kernel(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  check_device(out, "binary op");
  k::binary(op, a.dtype(), out.raw_data(), a.raw_data(), b.raw_data(), make_iter({&out, &a, &b}));
}

void where_kernel(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_device(out, "where");
  k::where(out.dtype(), out.raw_data(), cond.raw_data(), a.raw_data(), b.raw_data(), make_iter({&out, &cond, &a, &b}));
}

void copy_kernel(const Tensor& dst, const Tensor& src) {
  check_device(dst, "copy");
  check_device(src, "copy");
  k::copy(dst.dtype(), src.dtype(), dst.raw_data(), src.raw_data(), make_iter({&dst, &src}));
}

void fill_kernel(const Tensor& dst, double value) {
  check_device(dst, "fill");
  k::fill(dst.dtype(), dst.raw_data(), value, make_iter({&dst}));
}

}  // namespace

void register_elementwise_kernels(KernelTable& t) {
  t.unary = unary_kernel;
  t.pow_scalar = pow_kernel;
  t.binary = binary_kernel;
  t.where = where_kernel;
  t.copy = copy_kernel;
  t.fill = fill_kernel;
}

}  // namespace dl::cuda::host
