// The SGEMM kernel lab: each step from a naive kernel to a tiled, register-blocked, vectorised
// one, side by side, each checked against cuBLAS and timed, so a reader sees what every step buys.
// (In the spirit of llm.c's dev/cuda.) The production kernel, cuda/gemm.cu, is version 3
// generalised to any size, transposes, strides, batches and float64.
//
//   v1 naive              one thread per C element, operands straight from global memory
//   v2 shared tiles       32 x 32 tiles of A and B staged in shared memory: each global element
//                         is read once per tile instead of once per multiply
//   v3 register tiles     128 x 128 block tile, BK = 8, each thread an 8 x 8 sub-tile held in
//                         registers: 64 FMAs per 16 shared-memory reads
//   v4 vectorised         v3 with float4 global loads (A stored transposed in shared memory) and
//                         float4 shared reads; sizes must be multiples of the tile
//   v5 double-buffered    v4 with the next K slice loaded into registers while the current one is
//                         multiplied (two shared buffers, one barrier per slice)
//   v6 TF32 WMMA          tensor cores through wmma (m16n16k8, tf32 inputs, float accumulation):
//                         not bit-comparable with FP32, about 1e-3 relative
//   cuBLAS FP32 / TF32    the reference
//
// Usage: sgemm_lab [size ...]   (square sizes, multiples of 128; default 1024 4096)
// Row-major C (M x N) = A (M x K) @ B (K x N) throughout.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#define CHECK_CUDA(x)                                                                                         \
  do {                                                                                                        \
    cudaError_t e_ = (x);                                                                                     \
    if (e_ != cudaSuccess) {                                                                                  \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, #x);     \
      std::exit(1);                                                                                           \
    }                                                                                                         \
  } while (0)
#define CHECK_CUBLAS(x)                                                                                       \
  do {                                                                                                        \
    cublasStatus_t s_ = (x);                                                                                  \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                        \
      std::fprintf(stderr, "cuBLAS error %d at %s:%d: %s\n", static_cast<int>(s_), __FILE__, __LINE__, #x);   \
      std::exit(1);                                                                                           \
    }                                                                                                         \
  } while (0)

// ---- v1: naive ---------------------------------------------------------------------------------
// threadIdx.x walks N, so a warp reads a row of B and writes a row of C coalesced; A[m][k] is a
// broadcast.
__global__ void sgemm_v1(int M, int N, int K, const float* A, const float* B, float* C) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y * blockDim.y + threadIdx.y;
  if (m >= M || n >= N) return;
  float s = 0.f;
  for (int k = 0; k < K; ++k) s += A[static_cast<size_t>(m) * K + k] * B[static_cast<size_t>(k) * N + n];
  C[static_cast<size_t>(m) * N + n] = s;
}

// ---- v2: shared-memory tiles -----------------------------------------------------------------------
template <int T>
__global__ void sgemm_v2(int M, int N, int K, const float* A, const float* B, float* C) {
  __shared__ float As[T][T], Bs[T][T + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int n = blockIdx.x * T + tx, m = blockIdx.y * T + ty;
  float s = 0.f;
  for (int k0 = 0; k0 < K; k0 += T) {
    As[ty][tx] = (m < M && k0 + tx < K) ? A[static_cast<size_t>(m) * K + k0 + tx] : 0.f;
    Bs[ty][tx] = (k0 + ty < K && n < N) ? B[static_cast<size_t>(k0 + ty) * N + n] : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < T; ++k) s += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (m < M && n < N) C[static_cast<size_t>(m) * N + n] = s;
}

// ---- v3: 2-D register tiles ----------------------------------------------------------------------------
// 256 threads; thread (ty, tx) owns rows ty + 16 i and columns tx + 16 j (i, j < 8): shared reads
// are broadcasts (A) and consecutive words (B), the stores to C coalesced.
constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
__global__ void __launch_bounds__(256) sgemm_v3(int M, int N, int K, const float* A, const float* B, float* C) {
  __shared__ float As[BK][BM + 4], Bs[BK][BN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  float acc[TM][TN] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int idx = tid + l * 256;
      const int am = idx / BK, ak = idx % BK;  // A: 8 consecutive k per row
      As[ak][am] = (m0 + am < M && k0 + ak < K) ? A[static_cast<size_t>(m0 + am) * K + k0 + ak] : 0.f;
      const int bk = idx / BN, bn = idx % BN;  // B: a warp reads 32 consecutive n
      Bs[bk][bn] = (k0 + bk < K && n0 + bn < N) ? B[static_cast<size_t>(k0 + bk) * N + n0 + bn] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < M && n < N) C[static_cast<size_t>(m) * N + n] = acc[i][j];
    }
}

// ---- v4: vectorised loads ------------------------------------------------------------------------------
// M, N multiples of 128, K a multiple of 8, rows 16-byte aligned. Each thread loads one float4 of
// A (4 consecutive k of a row, written transposed into As) and one float4 of B per slice. Thread
// (ty, tx) owns rows ty * 4 + {0..3} + 64 {0, 1} and columns tx * 4 + {0..3} + 64 {0, 1}: its
// shared reads are two float4 per operand per k.
__device__ __forceinline__ void fma_tile(float (&acc)[8][8], const float (&a)[8], const float (&b)[8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
}

__device__ __forceinline__ void store_tile(float* C, int N, int m0, int n0, int tx, int ty, const float (&acc)[8][8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + ty * 4 + (i % 4) + 64 * (i / 4);
#pragma unroll
    for (int jh = 0; jh < 2; ++jh) {
      const int n = n0 + tx * 4 + 64 * jh;
      *reinterpret_cast<float4*>(&C[static_cast<size_t>(m) * N + n]) =
          make_float4(acc[i][4 * jh], acc[i][4 * jh + 1], acc[i][4 * jh + 2], acc[i][4 * jh + 3]);
    }
  }
}

__global__ void __launch_bounds__(256) sgemm_v4(int M, int N, int K, const float* A, const float* B, float* C) {
  __shared__ __align__(16) float As[BK][BM], Bs[BK][BN];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int a_row = tid / 2, a_col = (tid % 2) * 4;  // 128 rows x 2 float4
  const int b_row = tid / 32, b_col = (tid % 32) * 4;  // 8 rows x 32 float4
  float acc[8][8] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
    const float4 av = *reinterpret_cast<const float4*>(&A[static_cast<size_t>(m0 + a_row) * K + k0 + a_col]);
    As[a_col + 0][a_row] = av.x;
    As[a_col + 1][a_row] = av.y;
    As[a_col + 2][a_row] = av.z;
    As[a_col + 3][a_row] = av.w;
    *reinterpret_cast<float4*>(&Bs[b_row][b_col]) =
        *reinterpret_cast<const float4*>(&B[static_cast<size_t>(k0 + b_row) * N + n0 + b_col]);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[8], b[8];
      const float4 a0 = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[kk][ty * 4 + 64]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4 + 64]);
      a[0] = a0.x, a[1] = a0.y, a[2] = a0.z, a[3] = a0.w, a[4] = a1.x, a[5] = a1.y, a[6] = a1.z, a[7] = a1.w;
      b[0] = b0.x, b[1] = b0.y, b[2] = b0.z, b[3] = b0.w, b[4] = b1.x, b[5] = b1.y, b[6] = b1.z, b[7] = b1.w;
      fma_tile(acc, a, b);
    }
    __syncthreads();
  }
  store_tile(C, N, m0, n0, tx, ty, acc);
}

// ---- v5: double buffering ---------------------------------------------------------------------------------
__global__ void __launch_bounds__(256) sgemm_v5(int M, int N, int K, const float* A, const float* B, float* C) {
  __shared__ __align__(16) float As[2][BK][BM], Bs[2][BK][BN];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int a_row = tid / 2, a_col = (tid % 2) * 4;
  const int b_row = tid / 32, b_col = (tid % 32) * 4;
  const float* a_ptr = &A[static_cast<size_t>(m0 + a_row) * K + a_col];
  const float* b_ptr = &B[static_cast<size_t>(b_row) * N + n0 + b_col];
  auto stash = [&](int buf, const float4& av, const float4& bv) {
    As[buf][a_col + 0][a_row] = av.x;
    As[buf][a_col + 1][a_row] = av.y;
    As[buf][a_col + 2][a_row] = av.z;
    As[buf][a_col + 3][a_row] = av.w;
    *reinterpret_cast<float4*>(&Bs[buf][b_row][b_col]) = bv;
  };
  stash(0, *reinterpret_cast<const float4*>(a_ptr), *reinterpret_cast<const float4*>(b_ptr));
  __syncthreads();
  float acc[8][8] = {};
  int buf = 0;
  for (int k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    float4 an, bn;
    if (more) {  // issue the next slice's loads before computing on this one
      an = *reinterpret_cast<const float4*>(a_ptr + k0 + BK);
      bn = *reinterpret_cast<const float4*>(b_ptr + static_cast<size_t>(k0 + BK) * N);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[8], b[8];
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4 + 64]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4 + 64]);
      a[0] = a0.x, a[1] = a0.y, a[2] = a0.z, a[3] = a0.w, a[4] = a1.x, a[5] = a1.y, a[6] = a1.z, a[7] = a1.w;
      b[0] = b0.x, b[1] = b0.y, b[2] = b0.z, b[3] = b0.w, b[4] = b1.x, b[5] = b1.y, b[6] = b1.z, b[7] = b1.w;
      fma_tile(acc, a, b);
    }
    if (more) stash(buf ^ 1, an, bn);  // the other buffer: nobody reads it this slice
    __syncthreads();
    buf ^= 1;
  }
  store_tile(C, N, m0, n0, tx, ty, acc);
}

// ---- v6: TF32 tensor cores through WMMA ------------------------------------------------------------------------------
// 128 x 128 block tile, K slices of 32, 8 warps as 2 (M) x 4 (N), each warp 64 x 32 = 4 x 2
// fragments of 16 x 16. M, N multiples of 128, K of 32.
namespace wmma = nvcuda::wmma;
constexpr int WK = 32, A_LD = WK + 4, B_LD = BN + 4;
__global__ void __launch_bounds__(256) sgemm_v6_tf32(int M, int N, int K, const float* A, const float* B, float* C) {
  __shared__ __align__(32) float As[BM * A_LD];
  __shared__ __align__(32) float Bs[WK * B_LD];
  const int tid = threadIdx.x, warp = tid / 32;
  const int wm = warp / 4, wn = warp % 4;  // warp tile origin: (wm * 64, wn * 32)
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  for (int k0 = 0; k0 < K; k0 += WK) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {  // A: 128 x 32 = 1024 float4; B: 32 x 128 = 1024 float4
      const int f = tid + l * 256;
      const int ar = f / (WK / 4), ac = (f % (WK / 4)) * 4;
      *reinterpret_cast<float4*>(&As[ar * A_LD + ac]) =
          *reinterpret_cast<const float4*>(&A[static_cast<size_t>(m0 + ar) * K + k0 + ac]);
      const int br = f / (BN / 4), bc = (f % (BN / 4)) * 4;
      *reinterpret_cast<float4*>(&Bs[br * B_LD + bc]) =
          *reinterpret_cast<const float4*>(&B[static_cast<size_t>(k0 + br) * N + n0 + bc]);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < WK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> af[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> bf[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        wmma::load_matrix_sync(af[i], &As[(wm * 64 + i * 16) * A_LD + kk], A_LD);
#pragma unroll
        for (int t = 0; t < af[i].num_elements; ++t) af[i].x[t] = wmma::__float_to_tf32(af[i].x[t]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(bf[j], &Bs[kk * B_LD + wn * 32 + j * 16], B_LD);
#pragma unroll
        for (int t = 0; t < bf[j].num_elements; ++t) bf[j].x[t] = wmma::__float_to_tf32(bf[j].x[t]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&C[static_cast<size_t>(m0 + wm * 64 + i * 16) * N + n0 + wn * 32 + j * 16], acc[i][j], N,
                              wmma::mem_row_major);
}

// ---- driver ---------------------------------------------------------------------------------------------

struct Result {
  std::string name;
  double ms, tflops, max_rel_err;
  bool ok;
};

template <typename F>
double time_ms(F launch, int runs) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  launch();  // warm-up
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> t;
  for (int r = 0; r < runs; ++r) {
    CHECK_CUDA(cudaEventRecord(a));
    launch();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CHECK_CUDA(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// max |c - ref| / max(|ref|, 1) over every element
double max_rel_err(const std::vector<float>& c, const std::vector<float>& ref) {
  double worst = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const double d = std::abs(static_cast<double>(c[i]) - ref[i]) / std::max(1.0, std::abs(static_cast<double>(ref[i])));
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
  }
  return worst;
}

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("sgemm_lab: no CUDA device (%s); nothing to measure\n", cudaGetErrorString(cudaGetLastError()));
    return 0;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::vector<int> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes = {1024, 4096};
  cublasHandle_t h;
  CHECK_CUBLAS(cublasCreate(&h));
  std::printf("SGEMM kernel lab on %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  bool all_ok = true;
  for (int n : sizes) {
    if (n <= 0 || n % 128 != 0) {
      std::printf("size %d skipped: sizes must be positive multiples of 128\n", n);
      continue;
    }
    const int M = n, N = n, K = n;
    const size_t elems = static_cast<size_t>(n) * n;
    std::vector<float> ha(elems), hb(elems);
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& v : ha) v = u(rng);
    for (auto& v : hb) v = u(rng);
    float *A, *B, *C, *R;
    CHECK_CUDA(cudaMalloc(&A, elems * 4));
    CHECK_CUDA(cudaMalloc(&B, elems * 4));
    CHECK_CUDA(cudaMalloc(&C, elems * 4));
    CHECK_CUDA(cudaMalloc(&R, elems * 4));
    CHECK_CUDA(cudaMemcpy(A, ha.data(), elems * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(B, hb.data(), elems * 4, cudaMemcpyHostToDevice));
    const float one = 1.f, zero = 0.f;
    // row-major C = A B is column-major C^T = B^T A^T
    auto cublas = [&](float* out, bool tf32) {
      CHECK_CUBLAS(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, B, CUDA_R_32F, N, A, CUDA_R_32F, K, &zero,
                                out, CUDA_R_32F, N, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
    };
    cublas(R, false);
    CHECK_CUDA(cudaDeviceSynchronize());
    std::vector<float> ref(elems), out(elems);
    CHECK_CUDA(cudaMemcpy(ref.data(), R, elems * 4, cudaMemcpyDeviceToHost));
    const int runs = n >= 4096 ? 3 : 7;
    const double flops = 2.0 * M * N * K;
    std::vector<Result> results;
    auto measure = [&](const std::string& name, double tol, auto launch) {
      CHECK_CUDA(cudaMemset(C, 0, elems * 4));
      const double ms = time_ms(launch, runs);
      CHECK_CUDA(cudaMemcpy(out.data(), C, elems * 4, cudaMemcpyDeviceToHost));
      const double err = max_rel_err(out, ref);
      results.push_back({name, ms, flops / (ms * 1e-3) / 1e12, err, err <= tol});
    };
    const double fp32_tol = 1e-5 * std::sqrt(static_cast<double>(K)), tf32_tol = 3e-3 * std::sqrt(static_cast<double>(K));
    if (n <= 4096)  // the naive kernel takes seconds at 8192
      measure("v1 naive", fp32_tol, [&] { sgemm_v1<<<dim3(N / 32, M / 32), dim3(32, 32)>>>(M, N, K, A, B, C); });
    measure("v2 shared tiles 32x32", fp32_tol, [&] { sgemm_v2<32><<<dim3(N / 32, M / 32), dim3(32, 32)>>>(M, N, K, A, B, C); });
    measure("v3 register tiles 128x128x8", fp32_tol, [&] { sgemm_v3<<<dim3(N / BN, M / BM), 256>>>(M, N, K, A, B, C); });
    measure("v4 + float4 loads", fp32_tol, [&] { sgemm_v4<<<dim3(N / BN, M / BM), 256>>>(M, N, K, A, B, C); });
    measure("v5 + double buffering", fp32_tol, [&] { sgemm_v5<<<dim3(N / BN, M / BM), 256>>>(M, N, K, A, B, C); });
    measure("v6 TF32 wmma", tf32_tol, [&] { sgemm_v6_tf32<<<dim3(N / BN, M / BM), 256>>>(M, N, K, A, B, C); });
    measure("cuBLAS FP32", fp32_tol, [&] { cublas(C, false); });
    measure("cuBLAS TF32", tf32_tol, [&] { cublas(C, true); });
    std::printf("\nM = N = K = %d (median of %d runs; error: max |C - cuBLAS FP32| / max(|ref|, 1))\n", n, runs);
    std::printf("  %-30s %10s %10s %12s\n", "kernel", "ms", "TFLOP/s", "max error");
    for (const Result& r : results) {
      std::printf("  %-30s %10.3f %10.2f %12.2e %s\n", r.name.c_str(), r.ms, r.tflops, r.max_rel_err,
                  r.ok ? "" : "FAILED");
      all_ok = all_ok && r.ok;
    }
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    cudaFree(R);
  }
  cublasDestroy(h);
  std::printf("\n%s\n", all_ok ? "all kernels agree with cuBLAS" : "SOME KERNELS DISAGREE WITH cuBLAS");
  return all_ok ? 0 : 1;
}
