// The hand-written GEMM: shared-memory tiles and a register tile per thread, version 3 of the
// kernel lab (cuda/lab/sgemm_lab.cu shows the steps and what each bought). General: any M, N,
// K, transposes, leading dimensions, batch strides (0 broadcasts an operand), alpha and beta.
//
// A block computes a BM x BN tile of C; per BK slice of K it stages an A tile and a B tile in
// shared memory (both stored k-major, so the inner loop reads a column of A and a row of B), and
// each thread accumulates a TM x TN sub-tile in registers. A thread's rows are ty + i * (BM/TM)
// and its columns tx + j * (BN/TN): the shared-memory reads of a warp are then broadcasts (A) and
// consecutive words (B), free of bank conflicts, and the stores to C are coalesced.
#include <algorithm>

#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

template <typename T, int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    gemm_kernel(int64_t M, int64_t N, int64_t K, T alpha, const T* __restrict__ A, int64_t lda, int64_t sA,
                const T* __restrict__ B, int64_t ldb, int64_t sB, T beta, T* __restrict__ C, int64_t ldc, int64_t sC,
                int64_t m_block0, int64_t batch0) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int TX = BN / TN, TY = BM / TM;
  constexpr int PAD = 4;
  static_assert((BM * BK) % NT == 0 && (BN * BK) % NT == 0, "tile loads must divide evenly");
  __shared__ T As[BK][BM + PAD];
  __shared__ T Bs[BK][BN + PAD];

  const int64_t b = batch0 + blockIdx.z;
  A += b * sA;
  B += b * sB;
  C += b * sC;
  const int64_t m0 = (m_block0 + blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;

  T acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

  for (int64_t k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int l = 0; l < (BM * BK) / NT; ++l) {
      const int idx = tid + l * NT;
      // consecutive threads walk the operand's unit-stride dimension (coalesced reads)
      const int mm = TA ? idx % BM : idx / BK, kk = TA ? idx / BM : idx % BK;
      const int64_t gm = m0 + mm, gk = k0 + kk;
      T v = T(0);
      if (gm < M && gk < K) v = TA ? A[gk * lda + gm] : A[gm * lda + gk];
      As[kk][mm] = v;
    }
#pragma unroll
    for (int l = 0; l < (BN * BK) / NT; ++l) {
      const int idx = tid + l * NT;
      const int nn = TB ? idx / BK : idx % BN, kk = TB ? idx % BK : idx / BN;
      const int64_t gn = n0 + nn, gk = k0 + kk;
      T v = T(0);
      if (gn < N && gk < K) v = TB ? B[gn * ldb + gk] : B[gk * ldb + gn];
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      T a[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[kk][ty + i * TY];
#pragma unroll
      for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx + j * TX];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * bv[j];
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t gm = m0 + ty + i * TY;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t gn = n0 + tx + j * TX;
      if (gn >= N) continue;
      T* c = C + gm * ldc + gn;
      *c = beta == T(0) ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
    }
  }
}

template <typename T, int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
void launch_tiles(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, int64_t sA, const T* B,
                  int64_t ldb, int64_t sB, T beta, T* C, int64_t ldc, int64_t sC, int64_t batch) {
  constexpr int NT = (BM / TM) * (BN / TN);
  const int64_t mb = (M + BM - 1) / BM, nb = (N + BN - 1) / BN;
  DL_CUDA_REQUIRE(nb <= 0x7fffffff, "gemm: N too large");
  // grid.y and grid.z are limited to 65535: walk M tiles and batches in chunks
  for (int64_t b0 = 0; b0 < batch; b0 += 65535) {
    const int64_t bz = batch - b0 < 65535 ? batch - b0 : 65535;
    for (int64_t m_b0 = 0; m_b0 < mb; m_b0 += 65535) {
      const int64_t my = mb - m_b0 < 65535 ? mb - m_b0 : 65535;
      dim3 grid(static_cast<unsigned>(nb), static_cast<unsigned>(my), static_cast<unsigned>(bz));
      gemm_kernel<T, BM, BN, BK, TM, TN, TA, TB>
          <<<grid, NT, 0, stream()>>>(M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, m_b0, b0);
      DL_CUDA_LAUNCH_CHECK("gemm_kernel");
    }
  }
}

// The float32, no-transpose fast path: version 5 of the lab (float4 loads, A transposed into
// shared memory, the next K slice loaded into registers while the current one is multiplied, two
// shared buffers). Needs M and N multiples of 128, K of 8, and 16-byte aligned rows and batches.
// Thread (ty, tx) owns rows ty * 4 + {0..3} + {0, 64} and columns tx * 4 + {0..3} + {0, 64}.
__global__ void __launch_bounds__(256)
    sgemm_nn_vec_kernel(int64_t K, float alpha, const float* __restrict__ A, int64_t lda, int64_t sA,
                        const float* __restrict__ B, int64_t ldb, int64_t sB, float beta, float* __restrict__ C,
                        int64_t ldc, int64_t sC, int64_t m_block0, int64_t batch0) {
  __shared__ __align__(16) float As[2][8][128];
  __shared__ __align__(16) float Bs[2][8][128];
  const int64_t b = batch0 + blockIdx.z;
  A += b * sA;
  B += b * sB;
  C += b * sC;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = (m_block0 + blockIdx.y) * 128, n0 = static_cast<int64_t>(blockIdx.x) * 128;
  const int a_row = tid / 2, a_col = (tid % 2) * 4;    // 128 rows x 2 float4 of A
  const int b_row = tid / 32, b_col = (tid % 32) * 4;  // 8 rows x 32 float4 of B
  const float* a_ptr = A + (m0 + a_row) * lda + a_col;
  const float* b_ptr = B + b_row * ldb + n0 + b_col;
  auto stash = [&](int buf, const float4& av, const float4& bv) {
    As[buf][a_col + 0][a_row] = av.x;
    As[buf][a_col + 1][a_row] = av.y;
    As[buf][a_col + 2][a_row] = av.z;
    As[buf][a_col + 3][a_row] = av.w;
    *reinterpret_cast<float4*>(&Bs[buf][b_row][b_col]) = bv;
  };
  stash(0, *reinterpret_cast<const float4*>(a_ptr), *reinterpret_cast<const float4*>(b_ptr));
  __syncthreads();
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 8) {
    const bool more = k0 + 8 < K;
    float4 an = make_float4(0.f, 0.f, 0.f, 0.f), bn = an;
    if (more) {
      an = *reinterpret_cast<const float4*>(a_ptr + k0 + 8);
      bn = *reinterpret_cast<const float4*>(b_ptr + (k0 + 8) * ldb);
    }
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4 + 64]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4 + 64]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * bv[j];
    }
    if (more) stash(buf ^ 1, an, bn);  // nobody reads the other buffer during this slice
    __syncthreads();
    buf ^= 1;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + ty * 4 + (i % 4) + 64 * (i / 4);
#pragma unroll
    for (int jh = 0; jh < 2; ++jh) {
      float4* c = reinterpret_cast<float4*>(C + m * ldc + n0 + tx * 4 + 64 * jh);
      float4 r = make_float4(alpha * acc[i][4 * jh], alpha * acc[i][4 * jh + 1], alpha * acc[i][4 * jh + 2],
                             alpha * acc[i][4 * jh + 3]);
      if (beta != 0.f) {
        const float4 old = *c;
        r.x += beta * old.x;
        r.y += beta * old.y;
        r.z += beta * old.z;
        r.w += beta * old.w;
      }
      *c = r;
    }
  }
}

bool vec_path_ok(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, int64_t sA, const void* B, int64_t ldb,
                 int64_t sB, const void* C, int64_t ldc, int64_t sC) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return M % 128 == 0 && N % 128 == 0 && K % 8 == 0 && K > 0 && lda % 4 == 0 && ldb % 4 == 0 && ldc % 4 == 0 &&
         sA % 4 == 0 && sB % 4 == 0 && sC % 4 == 0 && aligned(A) && aligned(B) && aligned(C);
}

void launch_vec(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, int64_t sA, const float* B,
                int64_t ldb, int64_t sB, float beta, float* C, int64_t ldc, int64_t sC, int64_t batch) {
  const int64_t mb = M / 128, nb = N / 128;
  for (int64_t b0 = 0; b0 < batch; b0 += 65535) {
    const int64_t bz = batch - b0 < 65535 ? batch - b0 : 65535;
    for (int64_t m_b0 = 0; m_b0 < mb; m_b0 += 65535) {
      const int64_t my = mb - m_b0 < 65535 ? mb - m_b0 : 65535;
      dim3 grid(static_cast<unsigned>(nb), static_cast<unsigned>(my), static_cast<unsigned>(bz));
      sgemm_nn_vec_kernel<<<grid, 256, 0, stream()>>>(K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, m_b0, b0);
      DL_CUDA_LAUNCH_CHECK("sgemm_nn_vec_kernel");
    }
  }
}

// Big tiles when there are enough of them to fill the GPU, else 64 x 64 ones; the vectorised
// kernel when float32, untransposed and aligned.
template <typename T, bool TA, bool TB>
void launch_sized(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, int64_t sA, const T* B,
                  int64_t ldb, int64_t sB, T beta, T* C, int64_t ldc, int64_t sC, int64_t batch) {
  const int64_t big_tiles = ((M + 127) / 128) * ((N + 127) / 128) * batch;
  if constexpr (sizeof(T) == 4 && !TA && !TB) {
    if (big_tiles >= 2 * detail::sm_count() && vec_path_ok(M, N, K, A, lda, sA, B, ldb, sB, C, ldc, sC)) {
      launch_vec(M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
      return;
    }
  }
  if constexpr (sizeof(T) == 4) {
    if (big_tiles >= 2 * detail::sm_count()) {
      launch_tiles<T, 128, 128, 8, 8, 8, TA, TB>(M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
      return;
    }
  }
  launch_tiles<T, 64, 64, 8, 4, 4, TA, TB>(M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}

template <typename T>
void launch_any(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T a, const T* pa, int64_t lda, int64_t sA,
                const T* pb, int64_t ldb, int64_t sB, T bt, T* pc, int64_t ldc, int64_t sC, int64_t batch) {
  if (!ta && !tb) return launch_sized<T, false, false>(M, N, K, a, pa, lda, sA, pb, ldb, sB, bt, pc, ldc, sC, batch);
  if (ta && !tb) return launch_sized<T, true, false>(M, N, K, a, pa, lda, sA, pb, ldb, sB, bt, pc, ldc, sC, batch);
  if (!ta && tb) return launch_sized<T, false, true>(M, N, K, a, pa, lda, sA, pb, ldb, sB, bt, pc, ldc, sC, batch);
  launch_sized<T, true, true>(M, N, K, a, pa, lda, sA, pb, ldb, sB, bt, pc, ldc, sC, batch);
}

// C = alpha * sum_s P_s + beta * C, the slices summed in order (deterministic).
template <typename T>
__global__ void split_k_sum_kernel(T* C, int64_t ldc, const T* P, int64_t S, int64_t M, int64_t N, T alpha, T beta) {
  KERNEL_LOOP(i, M * N) {
    T s = T(0);
    for (int64_t k = 0; k < S; ++k) s += P[k * M * N + i];
    T* c = C + (i / N) * ldc + i % N;
    *c = beta == T(0) ? alpha * s : alpha * s + beta * *c;
  }
}

template <typename T>
void gemm_typed(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda,
                int64_t sA, const void* B, int64_t ldb, int64_t sB, double beta, void* C, int64_t ldc, int64_t sC,
                int64_t batch) {
  const T a = static_cast<T>(alpha), bt = static_cast<T>(beta);
  const T* pa = static_cast<const T*>(A);
  const T* pb = static_cast<const T*>(B);
  T* pc = static_cast<T*>(C);
  // Split K when a single product has too few output tiles to occupy the GPU and a long K (the
  // convolution's weight gradient: 64 x 576 outputs, K = images x pixels): S slices become a
  // batch of S products into scratch, then summed.
  const int64_t tiles = ((M + 63) / 64) * ((N + 63) / 64);
  const int64_t sms = detail::sm_count();
  if (batch == 1 && K >= 4096 && tiles < sms) {
    const int64_t S = std::min<int64_t>((2 * sms + tiles - 1) / tiles, K / 1024);
    if (S >= 2) {
      const int64_t ks = K / S, rest = K - S * ks;
      detail::Workspace part(static_cast<size_t>(S * M * N) * sizeof(T));
      T* P = part.as<T>();
      const int64_t step_a = ta ? ks * lda : ks, step_b = tb ? ks : ks * ldb;
      launch_any<T>(ta, tb, M, N, ks, T(1), pa, lda, step_a, pb, ldb, step_b, T(0), P, N, M * N, S);
      if (rest > 0)  // the last K - S ks columns go into slice 0
        launch_any<T>(ta, tb, M, N, rest, T(1), pa + (ta ? S * ks * lda : S * ks), lda, 0,
                      pb + (tb ? S * ks : S * ks * ldb), ldb, 0, T(1), P, N, 0, 1);
      split_k_sum_kernel<T><<<grid_1d(M * N), kThreads, 0, stream()>>>(pc, ldc, P, S, M, N, a, bt);
      DL_CUDA_LAUNCH_CHECK("split_k_sum_kernel");
      return;
    }
  }
  launch_any<T>(ta, tb, M, N, K, a, pa, lda, sA, pb, ldb, sB, bt, pc, ldc, sC, batch);
}

}  // namespace

void gemm(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  KDISPATCH_FLOATING(dt, "gemm", gemm_typed, ta, tb, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                     stride_c, batch);
}

}  // namespace dl::cuda::k
