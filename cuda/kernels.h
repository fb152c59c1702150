#pragma once
// Launchers of the hand-written kernels (cuda/*.cu): plain functions on raw device pointers,
// sizes and strides in elements, queued on the calling thread's current stream. The host side
// (cuda/*_host.cpp, one per kernel file) checks and unpacks Tensors and calls these; the .cu files
// see nothing of Tensor (fmt, which tensor/ uses, does not compile under nvcc), only what
// tensor/op_defs.h shares with them: DType, the op enums and their scalar math, the parameter structs.
//
// Indexing is 64-bit throughout (or 32-bit in kernels chosen only when every offset fits), and
// every launch uses grid-stride loops, so tensors above 2^31 elements work.
#include <cstdint>

#include "tensor/op_defs.h"

namespace dl::cuda::k {

constexpr int kMaxDims = 12;
constexpr int kMaxOperands = 4;

// Operands of an elementwise op sharing one shape. Dims of size 1 are dropped and dims that are
// contiguous for every operand merged (innermost last), so contiguous operands give ndim == 1
// with stride 1; ndim == 0 means a single element.
struct Iter {
  int nops = 0;
  int ndim = 0;
  int64_t numel = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxOperands][kMaxDims] = {};  // in elements of each operand
};

// ---- elementwise (elementwise.cu, binary.cu, copy.cu) ------------------------------------------------
// Operands: out first.
void unary(ops::UnaryOp op, DType dt, void* out, const void* in, const Iter& it, const ops::UnaryArgs& args);
void pow_scalar(DType dt, void* out, const void* in, double exponent, const Iter& it);
void binary(ops::BinaryOp op, DType dt, void* out, const void* a, const void* b, const Iter& it);  // comparisons: uint8 out
void where(DType dt, void* out, const void* cond, const void* a, const void* b, const Iter& it);
void copy(DType dst_dt, DType src_dt, void* dst, const void* src, const Iter& it);
void fill(DType dt, void* dst, double value, const Iter& it);

// ---- reductions and softmax (reduce.cu, softmax.cu) ---------------------------------------------
// in: contiguous (rows, cols); out (rows). Floating sums in double.
void reduce_rows(ops::ReduceOp op, DType dt, void* out, const void* in, int64_t rows, int64_t cols);
// the max of each row and its first index (the first NaN wins), as the CPU kernel
void max_rows(DType dt, void* values, int64_t* indices, const void* in, int64_t rows, int64_t cols);
// over the middle dim of a contiguous (outer, d, inner) tensor
void softmax(DType dt, void* out, const void* in, int64_t outer, int64_t d, int64_t inner, bool log);
void softmax_backward(DType dt, void* grad_in, const void* grad_out, const void* y, int64_t outer, int64_t d,
                      int64_t inner, bool log);

// ---- gather / scatter_add (index.cu) ---------------------------------------------------------
// Walks every element of `index` (shape sizes, any strides). gather: out[p] = x[p with p[dim] =
// index[p]]; scatter_add: out[p with p[dim] = index[p]] += src[p]. Indices outside [0, limit)
// are skipped and reported: false is returned with *bad_index set to one of them (finding out
// synchronises with the stream).
struct IndexGeom {
  int ndim = 0;
  int dim = 0;
  int64_t limit = 0;  // size of dim in x (gather) or out (scatter_add)
  int64_t sizes[kMaxDims] = {};
  int64_t index_strides[kMaxDims] = {};
  int64_t x_strides[kMaxDims] = {};    // gather: x; scatter_add: out
  int64_t out_strides[kMaxDims] = {};  // gather: out; scatter_add: src
};
bool gather(DType dt, void* out, const void* x, const int64_t* index, const IndexGeom& g, int64_t* bad_index);
bool scatter_add(DType dt, void* out, const int64_t* index, const void* src, const IndexGeom& g, int64_t* bad_index);

// ---- GEMM (gemm.cu) ----------------------------------------------------------------------------
// Row-major, batched: C_b (M, N) = alpha * op(A_b) (M, K) @ op(B_b) (K, N) + beta * C_b, where
// op(A) = A stored (M, K) with row stride lda, or with ta A^T of A stored (K, M); the same for B.
// X_b = X + b * strideX. beta == 0: C is not read. Float32 or float64.
void gemm(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch);

// ---- autocast's operand rounding (round.cu) -------------------------------------------------------
// out (B, R, C) packed = in[b sb + r sr + c sc] rounded to `to` (BFloat16 or Float16, nearest even),
// stored as `to` (2 bytes per element) or, widened, as the rounded values in float32.
void round_operand(DType to, bool widened, void* out, const float* in, int64_t B, int64_t R, int64_t C, int64_t sb,
                   int64_t sr, int64_t sc);
// out[i] = in[i] (n contiguous BFloat16 or Float16 values) as float32
void widen_to_float(DType from, float* out, const void* in, int64_t n);

// ---- convolution helpers (conv.cu) -----------------------------------------------------------------
// g: the convolution with its geometry filled in (tensor/op_defs.h).
// col[(n - n0) * col_n_stride + r * col_row_stride + l] = x tap, for images n in [n0, n0 + nb),
// rows r = (c * kh + ki) * kw + kj over all C channels, columns l = oh * Wo + ow (0 outside).
void im2col(DType dt, const void* x, void* col, const Conv2dParams& g, int64_t n0, int64_t nb, int64_t col_n_stride,
            int64_t col_row_stride);
// The adjoint: x[n0 .. n0 + nb) = the sum of every col entry that read each input element
// (assigned, not accumulated; a gather, so deterministic).
void col2im(DType dt, const void* col, void* x, const Conv2dParams& g, int64_t n0, int64_t nb, int64_t col_n_stride,
            int64_t col_row_stride);
// out (N, C, S) += bias[c]
void add_channel_bias(DType dt, void* out, const void* bias, int64_t N, int64_t C, int64_t S);
// out[c] = sum over n, s of in (N, C, S), accumulated in double (the conv bias gradient)
void channel_sum(DType dt, void* out, const void* in, int64_t N, int64_t C, int64_t S);

// ---- batch norm (batch_norm.cu): x (N, C, S); contract of KernelTable::batch_norm_* --------------------
void batch_norm_forward(DType dt, void* out, void* mean, void* invstd, const void* x, const void* weight,
                        const void* bias, void* running_mean, void* running_var, int64_t N, int64_t C, int64_t S,
                        bool training, double momentum, double eps);
void batch_norm_backward(DType dt, void* grad_x, void* grad_w, void* grad_b, const void* grad_out, const void* x,
                         const void* weight, const void* mean, const void* invstd, int64_t N, int64_t C, int64_t S,
                         bool training);
// mean[c] = running_mean[c], invstd[c] = 1 / sqrt(running_var[c] + eps) (eval statistics)
void batch_norm_eval_stats(DType dt, void* mean, void* invstd, const void* running_mean, const void* running_var,
                           int64_t C, double eps);

// ---- pooling (pool.cu): planes = N * C of H x W -> Ho x Wo --------------------------------------------
// g: the parameters with their geometry filled in (tensor/op_defs.h); adaptive pooling and max
// pooling's backward read only the geometry.
void max_pool2d_forward(DType dt, void* out, int64_t* indices, const void* x, const Pool2dParams& g);
void max_pool2d_backward(DType dt, void* grad_x, const void* grad_out, const int64_t* indices, const Pool2dParams& g);
void avg_pool2d_forward(DType dt, void* out, const void* x, const Pool2dParams& g);
void avg_pool2d_backward(DType dt, void* grad_x, const void* grad_out, const Pool2dParams& g);
void adaptive_avg_pool2d_forward(DType dt, void* out, const void* x, const Pool2dParams& g);
void adaptive_avg_pool2d_backward(DType dt, void* grad_x, const void* grad_out, const Pool2dParams& g);

// ---- cross entropy (loss.cu): logits (N, C), target int64 (N), weight (C) or null ------------------------
void cross_entropy_forward(DType dt, void* losses, const void* logits, const int64_t* target, const void* weight,
                           int64_t N, int64_t C, double label_smoothing);
void cross_entropy_backward(DType dt, void* grad, const void* grad_losses, const void* logits, const int64_t* target,
                            const void* weight, int64_t N, int64_t C, double label_smoothing);

// ---- fused optimizer steps (optim.cu): n contiguous elements; see cuda/optim.h --------------------------------
void sgd_step(DType dt, void* param, const void* grad, void* momentum_buffer, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first);
void adam_step(DType dt, void* param, const void* grad, void* exp_avg, void* exp_avg_sq, void* max_exp_avg_sq,
               int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay, double step_size,
               double bias_correction2_sqrt, bool decoupled, bool amsgrad);

}  // namespace dl::cuda::k
