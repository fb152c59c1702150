#pragma once
// The op dispatch table: one row of kernel pointers per device type. tensor/ops.cpp checks and
// allocates, then calls kernels(device).<op>(...). The CPU row is filled by tensor/cpu/; the CUDA
// row by cuda/ when it is built and initialised. Adding a kernel family = one field here.
//
// Kernel conventions: outputs are allocated by the caller with the final shape and dtype;
// inputs have already been broadcast (expanded views) and converted to the computing dtype;
// any input may be non-contiguous unless the field says otherwise.
#include <array>

#include "tensor/ops.h"

namespace dl {

struct KernelTable {
  // out = op(in); same dtype and shape.
  void (*unary)(ops::UnaryOp op, const Tensor& out, const Tensor& in) = nullptr;
  void (*pow_scalar)(const Tensor& out, const Tensor& in, double exponent) = nullptr;
  // out = op(a, b); a, b and out share a shape; comparisons write uint8 out.
  void (*binary)(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) = nullptr;
  // out = cond ? a : b, cond uint8.
  void (*where)(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = nullptr;
  // dst = src (same shape), converting dtype. Both on this device.
  void (*copy)(const Tensor& dst, const Tensor& src) = nullptr;
  void (*fill)(const Tensor& dst, double value) = nullptr;
  // in: contiguous (outer, reduce) matrix flattened; out: contiguous (outer).
  void (*reduce_rows)(ops::ReduceOp op, const Tensor& out, const Tensor& in, int64_t rows, int64_t cols) = nullptr;
  // values/indices of the max over each contiguous row.
  void (*max_rows)(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t rows, int64_t cols) = nullptr;
  // out[b] = a[b] @ b[b]; a: (B, M, K), b: (B, K, N), out (B, M, N) contiguous. a, b may be
  // transposed in their last two dims (unit stride in either), batch strides arbitrary.
  void (*bmm)(const Tensor& out, const Tensor& a, const Tensor& b) = nullptr;
  // softmax family over the middle dim of a contiguous (outer, D, inner) view.
  void (*softmax)(const Tensor& out, const Tensor& in, int64_t outer, int64_t d, int64_t inner, bool log) = nullptr;
  void (*softmax_backward)(const Tensor& grad_in, const Tensor& grad_out, const Tensor& y, int64_t outer,
                           int64_t d, int64_t inner, bool log) = nullptr;
  // gather/scatter_add along `dim`; index int64 with index.shape == out.shape (gather) or src.shape.
  void (*gather)(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) = nullptr;
  void (*scatter_add)(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) = nullptr;
};

KernelTable& kernels(DeviceType type);
inline KernelTable& kernels(Device d) { return kernels(d.type); }

namespace cpu {
void register_kernels(KernelTable& table);
}

}  // namespace dl
