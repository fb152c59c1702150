// GEMM through cuBLAS or the hand-written kernel (the Gemm family's switch), autocast's rounded GEMM
// (bfloat16 / float16 operands, float32 sums and output), and the bmm entry of the kernel table.
#include <algorithm>
#include <climits>

#include <cublas_v2.h>

#include "cuda/host.h"
#include "tensor/error.h"

#define DL_CUBLAS_CHECK(expr)                                                                              \
  do {                                                                                                     \
    cublasStatus_t dl_st_ = (expr);                                                                        \
    if (dl_st_ != CUBLAS_STATUS_SUCCESS)                                                                   \
      ::dl::cuda::detail::throw_library_error("cuBLAS", static_cast<int>(dl_st_), cublasGetStatusName(dl_st_), \
                                              #expr, __FILE__, __LINE__);                                  \
  } while (0)

namespace dl::cuda::host {
namespace {

// One handle per host thread (a handle must not be used by two threads at once); never destroyed,
// since destroying it during program exit can race with the CUDA runtime's own teardown.
cublasHandle_t handle() {
  thread_local cublasHandle_t h = [] {
    cublasHandle_t hh = nullptr;
    DL_CUBLAS_CHECK(cublasCreate(&hh));
    return hh;
  }();
  return h;
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

bool gemm_cublas(DType dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                 int64_t lda, int64_t sA, const void* B, int64_t ldb, int64_t sB, double beta, void* C, int64_t ldc,
                 int64_t sC, int64_t batch, bool tf32) {
  if (!fits_int(M) || !fits_int(N) || !fits_int(K) || !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc)) return false;
  if (K == 0) return false;  // C = beta C: the hand-written kernel does it for any layout
  if (M == 0 || N == 0 || batch == 0) return true;
  cublasHandle_t h = handle();
  DL_CUBLAS_CHECK(cublasSetStream(h, detail::current_stream()));
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: pass B first. A row-major
  // (rows, cols) matrix is a column-major (cols, rows) one, so "no transpose" stays CUBLAS_OP_N.
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(N), n = static_cast<int>(M), kk = static_cast<int>(K);
  for (int64_t b0 = 0; b0 < batch; b0 += INT_MAX) {
    const int nb = static_cast<int>(batch - b0 < INT_MAX ? batch - b0 : INT_MAX);
    if (dtype == DType::Float32) {
      const float fa = static_cast<float>(alpha), fb = static_cast<float>(beta);
      const auto* pa = static_cast<const float*>(A) + b0 * sA;
      const auto* pb = static_cast<const float*>(B) + b0 * sB;
      auto* pc = static_cast<float*>(C) + b0 * sC;
      DL_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opb, opa, m, n, kk, &fa, pb, CUDA_R_32F, static_cast<int>(ldb), sB,
                                                 pa, CUDA_R_32F, static_cast<int>(lda), sA, &fb, pc, CUDA_R_32F,
                                                 static_cast<int>(ldc), sC, nb,
                                                 tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                                 CUBLAS_GEMM_DEFAULT));
    } else if (dtype == DType::Float64) {
      const auto* pa = static_cast<const double*>(A) + b0 * sA;
      const auto* pb = static_cast<const double*>(B) + b0 * sB;
      auto* pc = static_cast<double*>(C) + b0 * sC;
      DL_CUBLAS_CHECK(cublasDgemmStridedBatched(h, opb, opa, m, n, kk, &alpha, pb, static_cast<int>(ldb), sB, pa,
                                                static_cast<int>(lda), sA, &beta, pc, static_cast<int>(ldc), sC, nb));
    } else {
      fail("matmul on CUDA: expected float32 or float64, got {}", dtype_name(dtype));
    }
  }
  return true;
}

void gemm(DType dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda,
          int64_t sA, const void* B, int64_t ldb, int64_t sB, double beta, void* C, int64_t ldc, int64_t sC,
          int64_t batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if (get_backend(OpFamily::Gemm) == Backend::Library &&
      gemm_cublas(dtype, ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch, allow_tf32()))
    return;
  k::gemm(dtype, ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}

namespace {

cudaDataType_t cuda_type_of(DType t) { return t == DType::BFloat16 ? CUDA_R_16BF : CUDA_R_16F; }

// One operand of gemm_rounded, rounded into a packed (batches, rows, cols) buffer (batches = 1 when
// its batch stride is 0: a broadcast operand is rounded once): 16-bit values for cuBLAS, or the
// rounded values as float32 (`widened`) for the float32 kernels.
struct RoundedOperand {
  detail::Workspace buf;
  int64_t ld, stride;
  RoundedOperand(DType to, bool widened, const float* src, int64_t rows, int64_t cols, int64_t ld_in,
                 int64_t stride_in, int64_t batch)
      : buf(static_cast<size_t>((stride_in == 0 ? 1 : batch) * rows * cols * (widened ? 4 : 2))),
        ld(std::max<int64_t>(cols, 1)),
        stride(stride_in == 0 ? 0 : rows * cols) {
    k::round_operand(to, widened, buf.ptr, src, stride_in == 0 ? 1 : batch, rows, cols, stride_in, ld_in, 1);
  }
};

}  // namespace

bool gemm_cublas_lowp(DType in_type, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                      int64_t lda, int64_t sA, const void* B, int64_t ldb, int64_t sB, double beta, float* C,
                      int64_t ldc, int64_t sC, int64_t batch) {
  if (!fits_int(M) || !fits_int(N) || !fits_int(K) || !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc)) return false;
  if (K == 0) return false;
  if (M == 0 || N == 0 || batch == 0) return true;
  cublasHandle_t h = handle();
  DL_CUBLAS_CHECK(cublasSetStream(h, detail::current_stream()));
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(N), n = static_cast<int>(M), kk = static_cast<int>(K);
  const cudaDataType_t ty = cuda_type_of(in_type);
  const float fa = static_cast<float>(alpha), fb = static_cast<float>(beta);
  for (int64_t b0 = 0; b0 < batch; b0 += INT_MAX) {
    const int nb = static_cast<int>(batch - b0 < INT_MAX ? batch - b0 : INT_MAX);
    const auto* pa = static_cast<const char*>(A) + b0 * sA * 2;
    const auto* pb = static_cast<const char*>(B) + b0 * sB * 2;
    // 16-bit operands, float32 output, float32 sums: tensor cores (CUBLAS_GEMM_DEFAULT picks them)
    DL_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opb, opa, m, n, kk, &fa, pb, ty, static_cast<int>(ldb), sB, pa, ty,
                                               static_cast<int>(lda), sA, &fb, C + b0 * sC, CUDA_R_32F,
                                               static_cast<int>(ldc), sC, nb, CUBLAS_COMPUTE_32F,
                                               CUBLAS_GEMM_DEFAULT));
  }
  return true;
}

void gemm_rounded(DType gemm_dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const float* A,
                  int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB, double beta, float* C,
                  int64_t ldc, int64_t sC, int64_t batch) {
  if (gemm_dtype != DType::BFloat16 && gemm_dtype != DType::Float16)
    fail("matmul on CUDA: autocast multiplies float32 in bfloat16 or float16, not {}", dtype_name(gemm_dtype));
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if (K == 0) {  // no operands to round: C = beta C
    gemm(DType::Float32, ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
    return;
  }
  const int64_t ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
  if (get_backend(OpFamily::Gemm) == Backend::Library && fits_int(M) && fits_int(N) && fits_int(K)) {
    const RoundedOperand a(gemm_dtype, false, A, ra, ca, lda, sA, batch), b(gemm_dtype, false, B, rb, cb, ldb, sB, batch);
    if (gemm_cublas_lowp(gemm_dtype, ta, tb, M, N, K, alpha, a.buf.ptr, a.ld, a.stride, b.buf.ptr, b.ld, b.stride, beta,
                         C, ldc, sC, batch))
      return;
  }
  // the float32 kernel on the rounded operands: the same numbers (exact products, float32 sums)
  const RoundedOperand a(gemm_dtype, true, A, ra, ca, lda, sA, batch), b(gemm_dtype, true, B, rb, cb, ldb, sB, batch);
  gemm(DType::Float32, ta, tb, M, N, K, alpha, a.buf.ptr, a.ld, a.stride, b.buf.ptr, b.ld, b.stride, beta, C, ldc, sC,
       batch);
}

Tensor rounded_copy(const Tensor& x_in, DType to) {
  if (x_in.dtype() != DType::Float32)
    fail("autocast on CUDA rounds float32 tensors, got {}", dtype_name(x_in.dtype()));
  const Tensor x = x_in.is_contiguous() ? x_in : ops::contiguous(x_in);
  Tensor r = empty(x.sizes(), {DType::Float32, x.device()});
  k::round_operand(to, true, r.raw_data(), static_cast<const float*>(x.raw_data()), 1, 1, x.numel(), 0, 0, 1);
  return r;
}

namespace {

// How a (B, R, C) operand is laid out for the GEMM: row-major with row stride ld, or (trans) the
// transpose of a row-major (C, R) matrix. Returns false when neither describes it (a copy is needed).
bool gemm_layout(const Tensor& t, bool& trans, int64_t& ld) {
  const int64_t R = t.sizes()[1], C = t.sizes()[2];
  const int64_t sr = t.strides()[1], sc = t.strides()[2];
  if ((sc == 1 || C == 1) && (R == 1 || sr >= std::max<int64_t>(C, 1))) {
    trans = false;
    ld = R == 1 ? std::max<int64_t>(C, 1) : sr;
    return true;
  }
  if ((sr == 1 || R == 1) && (C == 1 || sc >= std::max<int64_t>(R, 1))) {
    trans = true;
    ld = C == 1 ? std::max<int64_t>(R, 1) : sc;
    return true;
  }
  return false;
}

void bmm_kernel(const Tensor& out, const Tensor& a_in, const Tensor& b_in, DType gemm_dtype) {
  check_device(out, "matmul");
  if (gemm_dtype != DType::Float32 && a_in.dtype() != DType::Float32)
    fail("matmul on CUDA: autocast rounds float32 operands only, got {}", dtype_name(a_in.dtype()));
  Tensor a = a_in, b = b_in;
  bool ta = false, tb = false;
  int64_t lda = 0, ldb = 0;
  if (!gemm_layout(a, ta, lda)) {
    a = ops::contiguous(ops::clone(a));
    gemm_layout(a, ta, lda);
  }
  if (!gemm_layout(b, tb, ldb)) {
    b = ops::contiguous(ops::clone(b));
    gemm_layout(b, tb, ldb);
  }
  const int64_t B = a.sizes()[0], M = a.sizes()[1], K = a.sizes()[2], N = b.sizes()[2];
  const int64_t sa = B == 1 ? 0 : a.strides()[0], sb = B == 1 ? 0 : b.strides()[0];
  if (gemm_dtype != DType::Float32) {
    gemm_rounded(gemm_dtype, ta, tb, M, N, K, 1.0, static_cast<const float*>(a.raw_data()), lda, sa,
                 static_cast<const float*>(b.raw_data()), ldb, sb, 0.0, static_cast<float*>(out.raw_data()),
                 std::max<int64_t>(N, 1), M * N, B);
    return;
  }
  gemm(a.dtype(), ta, tb, M, N, K, 1.0, a.raw_data(), lda, sa, b.raw_data(), ldb, sb, 0.0, out.raw_data(),
       std::max<int64_t>(N, 1), M * N, B);
}

}  // namespace

void register_blas_kernels(KernelTable& t) { t.bmm = bmm_kernel; }

}  // namespace dl::cuda::host
