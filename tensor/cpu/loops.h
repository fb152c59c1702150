#pragma once
// Strided iteration for elementwise CPU kernels. All operands share one shape (inputs are
// already broadcast). Dims that are contiguous for every operand are merged, so contiguous
// tensors become a single run; the innermost run goes to a callback with per-operand strides:
//     loop(ptrs, strides, n)   // ptrs[k] char*, strides[k] in bytes
// Work is split over OpenMP threads when there is enough of it.
#include <array>
#include <cstdint>
#include <exception>
#include <vector>

#include "tensor/tensor.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dl::cpu {

constexpr int64_t kParallelGrain = 32768;

// Marks a kernel's inner loop for function multiversioning: GCC compiles it for AVX-512, AVX2 and
// the baseline ISA and an ifunc resolver picks one when the program loads, so the library runs on
// any x86-64 and uses the widest vectors the machine has. Only on raw-pointer loops (`omp simd`
// inside); elsewhere it is empty.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(DL_NO_MULTIVERSIONING)
#define DL_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DL_VECTOR_CLONES
#endif
// With the clones, a*b + c may become one fused multiply-add (GCC contracts by default), which rounds once
// instead of twice. Loops whose results must equal another path's bit for bit (the optimizers' fused
// updates against their op-by-op form) say DL_NO_FP_CONTRACT.
#if defined(__GNUC__) && !defined(__clang__)
#define DL_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define DL_NO_FP_CONTRACT
#endif

template <int N, typename F>
void for_each_run(const std::array<const Tensor*, N>& ts, F&& loop) {
  const Shape& shape = ts[0]->sizes();
  int64_t ndim = static_cast<int64_t>(shape.size());
  int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  // collect sizes and byte strides, dropping size-1 dims
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, N>> strides;
  for (int64_t d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, N> s{};
    for (int k = 0; k < N; ++k) s[k] = ts[k]->strides()[d] * ts[k]->element_size();
    sizes.push_back(shape[d]);
    strides.push_back(s);
  }
  // merge dim i into i+1 (inner) when stride[i] == stride[i+1] * size[i+1] for all operands
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i) {
    bool ok = true;
    for (int k = 0; k < N; ++k) ok &= strides[i][k] == strides[i + 1][k] * sizes[i + 1];
    if (ok) {
      sizes[i] *= sizes[i + 1];
      strides[i] = strides[i + 1];
      sizes.erase(sizes.begin() + i + 1);
      strides.erase(strides.begin() + i + 1);
    }
  }
  if (sizes.empty()) {
    sizes.push_back(1);
    strides.push_back({});
  }
  std::array<char*, N> base;
  for (int k = 0; k < N; ++k) base[k] = static_cast<char*>(ts[k]->raw_data());
  const int64_t inner = sizes.back();
  const std::array<int64_t, N> inner_st = strides.back();
  const int64_t outer_dims = static_cast<int64_t>(sizes.size()) - 1;
  int64_t outer = numel / inner;

  auto run_outer = [&](int64_t o_begin, int64_t o_end, int64_t i_begin, int64_t i_end) {
    // position of o_begin in the outer dims
    std::vector<int64_t> idx(outer_dims, 0);
    int64_t rem = o_begin;
    for (int64_t d = outer_dims - 1; d >= 0; --d) {
      idx[d] = rem % sizes[d];
      rem /= sizes[d];
    }
    for (int64_t o = o_begin; o < o_end; ++o) {
      std::array<char*, N> p = base;
      for (int64_t d = 0; d < outer_dims; ++d)
        for (int k = 0; k < N; ++k) p[k] += idx[d] * strides[d][k];
      for (int k = 0; k < N; ++k) p[k] += i_begin * inner_st[k];
      loop(p, inner_st, i_end - i_begin);
      for (int64_t d = outer_dims - 1; d >= 0; --d) {
        if (++idx[d] < sizes[d]) break;
        idx[d] = 0;
      }
    }
  };

  if (numel < kParallelGrain) {
    run_outer(0, outer, 0, inner);
  } else if (outer >= 8) {
#pragma omp parallel
    {
#ifdef _OPENMP
      int nt = omp_get_num_threads(), tid = omp_get_thread_num();
#else
      int nt = 1, tid = 0;
#endif
      int64_t chunk = (outer + nt - 1) / nt;
      int64_t b = tid * chunk, e = std::min(outer, b + chunk);
      if (b < e) run_outer(b, e, 0, inner);
    }
  } else {
    for (int64_t o = 0; o < outer; ++o) {
#pragma omp parallel
      {
#ifdef _OPENMP
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
#else
        int nt = 1, tid = 0;
#endif
        int64_t chunk = (inner + nt - 1) / nt;
        int64_t b = tid * chunk, e = std::min(inner, b + chunk);
        if (b < e) run_outer(o, o + 1, b, e);
      }
    }
  }
}

// Splits [0, n) into one contiguous share per OpenMP thread and runs body(begin, end) on each, when
// there are at least as many items as threads (the body then runs single-threaded code, GEMMs
// included); otherwise runs body(0, n) on the calling thread, where a GEMM may use the threads. An
// exception thrown in a thread is carried out of the parallel region and rethrown here.
template <typename F>
void parallel_shares(int64_t n, F&& body) {
#ifdef _OPENMP
  const int nt = omp_get_max_threads();
  if (nt > 1 && n >= nt && !omp_in_parallel()) {
    std::exception_ptr error;
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), k = omp_get_num_threads();
      try {
        body(n * t / k, n * (t + 1) / k);
      } catch (...) {
#pragma omp critical(dl_parallel_shares_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#endif
  body(int64_t{0}, n);
}

}  // namespace dl::cpu
