#pragma once
// Internal to cuda/: the host side of the backend, shared by the .cpp files that turn Tensors
// into kernel launches. Each kernel file cuda/<family>.cu has its host side next to it
// (cuda/<family>_host.cpp; GEMM: blas.cpp), which unpacks the Tensors and fills its own rows of the
// dispatch table with a register_*_kernels function; register_kernels below is the one list of them.
#include <initializer_list>

#include "cuda/cuda.h"
#include "cuda/detail.h"
#include "cuda/kernels.h"
#include "tensor/dispatch.h"
#include "tensor/nn_ops.h"
#include "tensor/tensor.h"

namespace dl::cuda::host {

// Refuses tensors that are not on the current CUDA device.
void check_device(const Tensor& t, const char* op);
// The elementwise operand set of tensors sharing out's shape (out first); see k::Iter.
k::Iter make_iter(std::initializer_list<const Tensor*> ts);
// Optional tensors (undefined = absent) as kernel pointers.
inline const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
inline void* mut_ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// Row-major batched GEMM (k::gemm's contract) through cuBLAS or the hand-written kernel, as the
// Gemm family's backend says (cuBLAS also refuses sizes beyond int32; those run hand-written).
void gemm(DType dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch);
// The same but always through cuBLAS (for the benchmark); false when cuBLAS cannot take the sizes.
bool gemm_cublas(DType dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                 int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C,
                 int64_t ldc, int64_t stride_c, int64_t batch, bool tf32);

// Autocast (tensor/autocast.h): the float32 GEMM above with its operands rounded to gemm_dtype
// (BFloat16 or Float16) and float32 sums. Library backend: the operands converted to 16-bit buffers
// and cublasGemmStridedBatchedEx (16-bit inputs, float32 output, CUBLAS_COMPUTE_32F: tensor cores);
// otherwise (or when cuBLAS cannot take the sizes) the float32 GEMM on float32 copies holding the
// rounded values, which gives the same numbers up to summation order. Scratch from the caching allocator.
void gemm_rounded(DType gemm_dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const float* A,
                  int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, double beta, float* C,
                  int64_t ldc, int64_t stride_c, int64_t batch);
// cuBLAS on operands already in in_type (BFloat16 or Float16), float32 C; false when cuBLAS cannot
// take the sizes. For the benchmark and gemm_rounded.
bool gemm_cublas_lowp(DType in_type, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                      int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta,
                      float* C, int64_t ldc, int64_t stride_c, int64_t batch);
// Float32 copy of x (contiguous, on x's device) holding x's values rounded to `to` (BFloat16 or
// Float16): what the float32 kernels multiply under autocast.
Tensor rounded_copy(const Tensor& x, DType to);

// Hand-written convolution: im2col + GEMM (conv_host.cpp). Contracts of KernelTable's fields.
void conv2d_forward_handwritten(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const Conv2dParams& p);
void conv2d_backward_input_handwritten(const Tensor& gx, const Tensor& gout, const Tensor& w,
                                       const Conv2dParams& p);
void conv2d_backward_weight_handwritten(const Tensor& gw, const Tensor& gout, const Tensor& x,
                                        const Conv2dParams& p);

// cuDNN (cudnn.cpp). Each returns false when cuDNN cannot take the case (not built with cuDNN,
// sizes beyond int32, eps below CUDNN_BN_MIN_EPSILON, ...): the caller then runs hand-written.
bool cudnn_conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Conv2dParams& p);
bool cudnn_conv2d_backward_input(const Tensor& gx, const Tensor& gout, const Tensor& w, const Conv2dParams& p);
bool cudnn_conv2d_backward_weight(const Tensor& gw, const Tensor& gout, const Tensor& x, const Conv2dParams& p);
bool cudnn_batch_norm_forward(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, bool training, double momentum, double eps);
bool cudnn_batch_norm_backward(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                               const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                               const Tensor& invstd, bool training);
// How many convolution algorithm searches cuDNN has cached (for tests and the benchmark).
size_t cudnn_algorithm_cache_size();

// ---- registration: each kernel file's host side fills its rows of the CUDA table ----------------
void register_elementwise_kernels(KernelTable& t);  // elementwise_host.cpp (elementwise.cu, binary.cu)
void register_reduce_kernels(KernelTable& t);       // reduce_host.cpp (reduce.cu, softmax.cu, index.cu)
void register_blas_kernels(KernelTable& t);         // blas.cpp (gemm.cu, cuBLAS)
void register_conv_kernels(KernelTable& t);         // conv_host.cpp (conv.cu, cuDNN)
void register_batch_norm_kernels(KernelTable& t);   // batch_norm_host.cpp (batch_norm.cu, cuDNN)
void register_pool_kernels(KernelTable& t);         // pool_host.cpp (pool.cu)
void register_loss_kernels(KernelTable& t);         // loss_host.cpp (loss.cu)

// Called by dl::cuda::init() (cuda/runtime.cpp): explicit, since static initialisers in a static
// library are dropped by the linker when nothing references their object file (docs/cuda.md).
inline void register_kernels(KernelTable& t) {
  register_elementwise_kernels(t);
  register_reduce_kernels(t);
  register_blas_kernels(t);
  register_conv_kernels(t);
  register_batch_norm_kernels(t);
  register_pool_kernels(t);
  register_loss_kernels(t);
}

}  // namespace dl::cuda::host
