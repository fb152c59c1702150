#pragma once
// Raw tensor operations: no autograd, no graph. They validate arguments, work out the result's
// shape and dtype, allocate it, and call the kernel registered for the tensors' device in the
// dispatch table (tensor/dispatch.h). The differentiable API (Tensor's methods) is built on these.
#include <utility>
#include <vector>

#include "tensor/op_defs.h"
#include "tensor/tensor.h"

namespace dl::ops {

// UnaryOp, BinaryOp, ReduceOp and their scalar math: tensor/op_defs.h (DL_UNARY_OPS, ...).

// ---- views: share storage, never copy --------------------------------------------------------
Tensor as_strided(const Tensor& x, const Shape& sizes, const Shape& strides, int64_t offset);
Tensor view(const Tensor& x, Shape shape);  // throws when strides are incompatible
bool can_view(const Tensor& x, const Shape& shape);
Shape infer_size(const Shape& shape, int64_t numel);  // resolves one -1
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor alias(const Tensor& x);  // a new TensorImpl on the same storage, no autograd state

// ---- copies and conversions ------------------------------------------------------------------
Tensor contiguous(const Tensor& x);                 // returns x itself when already contiguous
Tensor clone(const Tensor& x);                      // always a fresh contiguous copy
Tensor to_dtype(const Tensor& x, DType dtype);      // x itself when the dtype matches
Tensor to_device(const Tensor& x, Device device);   // x itself when the device matches
void copy_(const Tensor& dst, const Tensor& src);   // broadcasts src to dst, converts dtype
void fill_(const Tensor& dst, double value);

// ---- elementwise -----------------------------------------------------------------------------
Tensor unary(UnaryOp op, const Tensor& x, const UnaryArgs& args = {});  // args: for ops with parameters
Tensor pow_scalar(const Tensor& x, double exponent);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);  // broadcast + type promotion
Tensor binary_scalar(BinaryOp op, const Tensor& a, double s);  // result keeps a's dtype
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// out = a + alpha * b, in place into a (same shape after broadcasting b)
void add_(const Tensor& a, const Tensor& b, double alpha);
// a = op(a, b) in place into a's memory (b broadcast to a's shape, converted to a's dtype); not
// for comparisons, whose result is uint8.
void binary_(BinaryOp op, const Tensor& a, const Tensor& b);

// ---- reductions ------------------------------------------------------------------------------
// dims empty means all dims. Sum/Mean of integer tensors give int64/float64 respectively.
Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int64_t> dims, bool keepdim);
std::pair<Tensor, Tensor> max_dim(const Tensor& x, int64_t dim, bool keepdim);  // values, int64 indices
Tensor var(const Tensor& x, std::vector<int64_t> dims, bool unbiased, bool keepdim);
// Sums x over the dims that broadcasting added or expanded, giving `shape`.
Tensor sum_to(const Tensor& x, const Shape& shape);
// Normalises a list of dims (wraps negatives, checks duplicates); empty -> all dims.
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim);

// ---- linear algebra and indexing --------------------------------------------------------------
// a: (..., M, K), b: (..., K, N), batch dims broadcast; 1-D operands as in NumPy.
// gemm_dtype: the precision of the products of float32 operands (tensor/autocast.h); Float32 = plain.
Tensor matmul(const Tensor& a, const Tensor& b, DType gemm_dtype = DType::Float32);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim);      // y = softmax(x)
Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim);  // y = log_softmax(x)
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);

}  // namespace dl::ops
