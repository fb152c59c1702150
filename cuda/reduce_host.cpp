// The reduction, softmax and gather/scatter rows of the CUDA kernel table (kernels in
// cuda/reduce.cu, cuda/softmax.cu and cuda/index.cu).
#include "cuda/host.h"
#include "tensor/error.h"

namespace dl::cuda::host {
namespace {

void reduce_rows_kernel(ops::ReduceOp op, const Tensor& out, const Tensor& in, int64_t rows, int64_t cols) {
  check_device(in, "reduction");
  k::reduce_rows(op, in.dtype(), out.raw_data(), in.raw_data(), rows, cols);
}

void max_rows_kernel(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t rows, int64_t cols) {
  check_device(in, "max");
  k::max_rows(in.dtype(), values.raw_data(), indices.data_ptr<int64_t>(), in.raw_data(), rows, cols);
}

void softmax_kernel(const Tensor& out, const Tensor& in, int64_t outer, int64_t d, int64_t inner, bool log) {
  check_device(in, "softmax");
  k::softmax(in.dtype(), out.raw_data(), in.raw_data(), outer, d, inner, log);
}

void softmax_backward_kernel(const Tensor& gin, const Tensor& gout, const Tensor& y, int64_t outer, int64_t d,
                             int64_t inner, bool log) {
  check_device(y, "softmax backward");
  k::softmax_backward(y.dtype(), gin.raw_data(), gout.raw_data(), y.raw_data(), outer, d, inner, log);
}

k::IndexGeom index_geom(const Tensor& index, const Tensor& data, const Tensor& other, int64_t dim, const char* op) {
  k::IndexGeom g;
  if (index.dim() > k::kMaxDims) fail("{} on CUDA: {} dims, at most {} supported", op, index.dim(), k::kMaxDims);
  if (index.dim() == 0) {  // a 0-d index: one element at position 0 of a 1-element dim
    g.ndim = 1;
    g.dim = 0;
    g.limit = data.dim() == 0 ? 1 : data.sizes()[0];
    g.sizes[0] = 1;
    return g;
  }
  g.ndim = static_cast<int>(index.dim());
  g.dim = static_cast<int>(dim);
  g.limit = data.sizes()[dim];
  for (int d = 0; d < g.ndim; ++d) {
    g.sizes[d] = index.sizes()[d];
    g.index_strides[d] = index.strides()[d];
    g.x_strides[d] = data.strides()[d];
    g.out_strides[d] = other.strides()[d];
  }
  return g;
}

void gather_kernel(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  check_device(out, "gather");
  k::IndexGeom g = index_geom(index, x, out, dim, "gather");
  int64_t bad = 0;
  if (!k::gather(x.dtype(), out.raw_data(), x.raw_data(), index.data_ptr<int64_t>(), g, &bad))
    fail("gather: index {} is out of range for dim {} of size {}", bad, dim, g.limit);
}

void scatter_add_kernel(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  check_device(out, "scatter_add");
  k::IndexGeom g = index_geom(index, out, src, dim, "scatter_add");
  int64_t bad = 0;
  if (!k::scatter_add(src.dtype(), out.raw_data(), index.data_ptr<int64_t>(), src.raw_data(), g, &bad))
    fail("scatter_add: index {} is out of range for dim {} of size {}", bad, dim, g.limit);
}

}  // namespace

void register_reduce_kernels(KernelTable& t) {
  t.reduce_rows = reduce_rows_kernel;
  t.max_rows = max_rows_kernel;
  t.softmax = softmax_kernel;
  t.softmax_backward = softmax_backward_kernel;
  t.gather = gather_kernel;
  t.scatter_add = scatter_add_kernel;
}

}  // namespace dl::cuda::host
