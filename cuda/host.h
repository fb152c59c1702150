#pragma once
// Internal to cuda/: the host side of the backend, shared by the .cpp files that turn Tensors
// into kernel launches (register.cpp, blas.cpp, conv_host.cpp, cudnn.cpp, optim_host.cpp).
#include <initializer_list>

#include "cuda/cuda.h"
#include "cuda/detail.h"
#include "cuda/kernels.h"
#include "tensor/nn_ops.h"
#include "tensor/tensor.h"

namespace dl::cuda::host {

k::DT dt_of(DType t);
// Refuses tensors that are not on the current CUDA device.
void check_device(const Tensor& t, const char* op);
// The elementwise operand set of tensors sharing out's shape (out first); see k::Iter.
k::Iter make_iter(std::initializer_list<const Tensor*> ts);

// Row-major batched GEMM (k::gemm's contract) through cuBLAS or the hand-written kernel, as the
// Gemm family's backend says (cuBLAS also refuses sizes beyond int32; those run hand-written).
void gemm(DType dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch);
// The same but always through cuBLAS (for the benchmark); false when cuBLAS cannot take the sizes.
bool gemm_cublas(DType dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                 int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C,
                 int64_t ldc, int64_t stride_c, int64_t batch, bool tf32);

// Hand-written convolution: im2col + GEMM (conv_host.cpp). Contracts of KernelTable's fields.
void conv2d_forward_handwritten(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const ops::Conv2dParams& p);
void conv2d_backward_input_handwritten(const Tensor& gx, const Tensor& gout, const Tensor& w,
                                       const ops::Conv2dParams& p);
void conv2d_backward_weight_handwritten(const Tensor& gw, const Tensor& gout, const Tensor& x,
                                        const ops::Conv2dParams& p);

// cuDNN (cudnn.cpp). Each returns false when cuDNN cannot take the case (not built with cuDNN,
// sizes beyond int32, eps below CUDNN_BN_MIN_EPSILON, ...): the caller then runs hand-written.
bool cudnn_conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                          const ops::Conv2dParams& p);
bool cudnn_conv2d_backward_input(const Tensor& gx, const Tensor& gout, const Tensor& w, const ops::Conv2dParams& p);
bool cudnn_conv2d_backward_weight(const Tensor& gw, const Tensor& gout, const Tensor& x, const ops::Conv2dParams& p);
bool cudnn_batch_norm_forward(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, bool training, double momentum, double eps);
bool cudnn_batch_norm_backward(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                               const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                               const Tensor& invstd, bool training);
// How many convolution algorithm searches cuDNN has cached (for tests and the benchmark).
size_t cudnn_algorithm_cache_size();

}  // namespace dl::cuda::host
