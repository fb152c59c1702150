// GEMM driver (GotoBLAS/BLIS style), portable micro-kernel, reference.
//
// Threads: C is split into a grid of rectangles, one per thread (choose_grid, gemm_common.h); each thread runs the serial
// blocked GEMM below on its rectangle with its own packing buffers (thread_local, 64-byte aligned, kept).
// Serial, M > MC:
//   jc over N by NC:   pc over K by KC:   pack op(B)[pc:+KC, jc:+NC] into NR-column panels (L3)
//                                         ic over M by MC:  pack op(A)[ic:+MC, pc:+KC] into MR-row panels (L2)
//                                                           jr over NR panels: ir over MR panels: micro-kernel
//   The B micro-panel (KC x NR) stays in L1 while the A panels stream from L2.
// Serial, M <= MC (one row block): gemm_small_m, which streams op(B) through L2 in stripes and hides the memory
//   latency by prefetching the next stripe from inside the micro-kernel.
// Packing handles the transposes, so the micro-kernels see one layout (except gemm_prepacked_b's op(A) in short K
// blocks, which an AVX2 micro-kernel reads in place: Kernel::rows_kc); the first KC block applies beta, later
// ones accumulate (beta = 1). Micro-kernels and fast packing routines for AVX2 / AVX-512 live in
// gemm_avx2.cpp / gemm_avx512.cpp, compiled with those ISA flags and chosen at run time.
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_common.h"
#include "tensor/cpu/gemm_kernel_types.h"
#include "tensor/cpu/cpu_info.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <new>
#include <type_traits>

#if defined(__x86_64__) || defined(_M_X64)
#define DL_GEMM_X86 1
#else
#define DL_GEMM_X86 0
#endif

namespace dl::cpu {
namespace {

using detail::DgemmUkr;
using detail::SgemmUkr;

template <typename T>
using Ukr = void (*)(int64_t, int64_t, int64_t, const T*, const T*, T*, int64_t, T, T, const void*, int64_t,
                     int64_t, int64_t);
template <typename T>
using RowsUkr = void (*)(int64_t, int64_t, int64_t, const T*, int64_t, const T*, T*, int64_t, T, T);
template <typename T>
using PackA = void (*)(bool, const T*, int64_t, int64_t, int64_t, T*);
template <typename T>
using PackB = void (*)(bool, const T*, int64_t, int64_t, int64_t, int64_t, T*);

template <typename T>
struct Kernel {
  int mr = 0, nr = 0;
  int64_t kc = 0, mc = 0, nc = 0;  // cache blocks; mc is a multiple of mr, nc of nr
  int64_t a_resident = 0;          // bytes of op(A) gemm_small_m keeps packed whole (in L2)
  Ukr<T> ukr = nullptr;
  PackA<T> pack_a = nullptr;
  PackB<T> pack_b = nullptr;
  RowsUkr<T> ukr_rows = nullptr;  // the micro-kernel on op(A)'s rows in place, where the kernel has one ...
  int64_t rows_kc = 0;            // ... and the longest K block gemm_prepacked_b gives it
};

// ---------------------------------------------------------------- packing (generic, MR/NR known at compile time)

#include "tensor/cpu/gemm_pack.inc"

// ---------------------------------------------------------------- portable micro-kernel

// Plain C++ (the compiler vectorizes the j loops for the baseline ISA). Sized so the MR x NR accumulators fit the
// 16 SSE registers of baseline x86-64.
template <typename T, int MR, int NR>
void portable_ukr(int64_t mr, int64_t nr, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta,
                  const void* /*pf*/, int64_t /*pf_ld*/, int64_t /*pf_lines*/, int64_t /*pf_n*/) {
  T acc[MR][NR] = {};
  if (mr == MR) {
    for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const T ai = a[i];
#pragma GCC unroll 16
        for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
      }
    }
  } else {
    for (int64_t k = 0; k < kc; ++k, a += mr, b += NR)
      for (int64_t i = 0; i < mr; ++i) {
        const T ai = a[i];
#pragma GCC unroll 16
        for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
      }
  }
  for (int64_t i = 0; i < mr; ++i) {
    T* cr = c + i * ldc;
    if (beta == T(0)) {
      for (int64_t j = 0; j < nr; ++j) cr[j] = alpha * acc[i][j];
    } else {
      for (int64_t j = 0; j < nr; ++j) cr[j] = alpha * acc[i][j] + beta * cr[j];
    }
  }
}

// ---------------------------------------------------------------- kernel selection

enum class Isa { portable = 0, avx2 = 1, avx512 = 2 };

Isa best_isa() {
#if DL_GEMM_X86
  static const Isa best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::portable;
  }();
  return best;
#else
  return Isa::portable;
#endif
}

// Read on every call (cheap) so tests can switch kernels with setenv.
Isa current_isa() {
  const Isa best = best_isa();
  const char* env = std::getenv("DL_GEMM_KERNEL");
  if (env == nullptr || *env == '\0') return best;
  Isa want = best;
  if (std::strcmp(env, "portable") == 0)
    want = Isa::portable;
  else if (std::strcmp(env, "avx2") == 0)
    want = Isa::avx2;
  else if (std::strcmp(env, "avx512") == 0)
    want = Isa::avx512;
  return static_cast<int>(want) <= static_cast<int>(best) ? want : best;
}

struct KernelSet {
  Kernel<float> s[3];
  Kernel<double> d[3];
};

// Cache blocking from the cache sizes (gemm.h: sgemm_blocks), for a kernel of mr x nr and elements of s bytes:
//   kc: the B micro-panel (kc x nr), which every A micro-panel of a block multiplies, fills L1d; the A
//       micro-panels and C's rows stream past it from L2 (kc * nr * s = L1d). Leaving two ways of L1 free for
//       them (kc 192 on a Zen 4) measured no faster than filling it (kc 256): the micro-kernel reads 128 bytes
//       of B per 28 FMAs, which L2 supplies easily, while a shorter kc costs more passes over C;
//   mc: the packed A block (mc x kc), re-read for every B micro-panel, takes a quarter of L2 (the B panels
//       streaming through, C's tiles and the next block's packing share the rest);
//   nc: the packed B block (kc x nc) takes a quarter of this CPU's share of L3;
//   a_resident: gemm_small_m keeps all of op(A) packed when it fits in 3/8 of L2;
//   rows_kc: gemm_prepacked_b reads op(A)'s rows in place (no packing) where a K block is at most this long: its
//       mr rows and the B micro-panel (kc x (mr + nr) values) take at most half of L1d. See gemm_prepacked_b.
// Multiples of 16 (kc), mr (mc) and nr (nc); clamped to kc in [64, 512], mc in [mr, 1024], nc in [nr, 8192].
// On the Zen 4 guest (32 KiB L1d, 1 MiB L2, 16 MiB of L3 per CPU) this gives 256, 252, 4096 for the 14 x 32
// AVX-512 kernel, where the constants tuned by hand on it were 256, 280, 4096; a CPU with larger caches (a
// Sapphire Rapids: 48 KiB, 2 MiB) gets larger blocks (384, 336). A level the machine does not describe counts
// as small (32 KiB L1d, 512 KiB L2, 4 MiB of L3 per CPU).
template <typename T>
void set_blocks(Kernel<T>& k, const CacheInfo& c) {
  const int64_t s = sizeof(T);
  const int64_t l1 = c.l1d.bytes > 0 ? c.l1d.bytes : 32 << 10;
  const int64_t l2 = c.l2.bytes > 0 ? c.l2.bytes : 512 << 10, l3 = c.l3.per_cpu_or(4 << 20);
  k.kc = std::clamp<int64_t>(l1 / (k.nr * s) / 16 * 16, 64, 512);
  k.mc = std::clamp<int64_t>(l2 / 4 / (k.kc * s) / k.mr * k.mr, k.mr, 1024 / k.mr * k.mr);
  k.nc = std::clamp<int64_t>(l3 / 4 / (k.kc * s) / k.nr * k.nr, k.nr, 8192 / k.nr * k.nr);
  k.a_resident = l2 * 3 / 8;
  k.rows_kc = l1 / 2 / ((k.mr + k.nr) * s);
}

// DL_GEMM_BLOCKS=kc,mc,nc overrides the derived blocks (for measuring other choices, and for tests); read on
// every call like DL_GEMM_KERNEL. A malformed value is ignored; kc is kept in [1, 4096], mc in [mr, 8192], nc in
// [nr, 65536].
template <typename T>
Kernel<T> with_env_blocks(Kernel<T> k) {
  const char* e = std::getenv("DL_GEMM_BLOCKS");
  if (e == nullptr || *e == '\0') return k;
  long long kc = 0, mc = 0, nc = 0;
  char tail = 0;
  if (std::sscanf(e, "%lld,%lld,%lld%c", &kc, &mc, &nc, &tail) != 3 || kc <= 0 || mc <= 0 || nc <= 0) return k;
  // bounded like the derived blocks (a typo must not ask for gigabytes of packing buffer)
  k.kc = std::clamp<int64_t>(kc, 1, 4096);
  k.mc = std::clamp<int64_t>(mc / k.mr * k.mr, k.mr, 8192 / k.mr * k.mr);
  k.nc = std::clamp<int64_t>(nc / k.nr * k.nr, k.nr, 65536 / k.nr * k.nr);
  return k;
}

const KernelSet& kernels() {
  static const KernelSet ks = [] {
    KernelSet r;
    const CacheInfo& caches = cpu_caches();
    r.s[0] = {4, 8, 0, 0, 0, 0, &portable_ukr<float, 4, 8>, &pack_a_generic<float, 4>, &pack_b_generic<float, 8>};
    set_blocks(r.s[0], caches);
    r.d[0] = {4, 4, 0, 0, 0, 0, &portable_ukr<double, 4, 4>, &pack_a_generic<double, 4>, &pack_b_generic<double, 4>};
    set_blocks(r.d[0], caches);
    r.s[1] = r.s[0], r.s[2] = r.s[0];
    r.d[1] = r.d[0], r.d[2] = r.d[0];
#if DL_GEMM_X86
    const Isa best = best_isa();
    if (best >= Isa::avx2) {
      detail::gemm_avx2_sgemm(&r.s[1].mr, &r.s[1].nr, &r.s[1].ukr, &r.s[1].pack_a, &r.s[1].pack_b,
                              &r.s[1].ukr_rows);
      detail::gemm_avx2_dgemm(&r.d[1].mr, &r.d[1].nr, &r.d[1].ukr, &r.d[1].pack_a, &r.d[1].pack_b,
                              &r.d[1].ukr_rows);
      set_blocks(r.s[1], caches);
      set_blocks(r.d[1], caches);
    }
    if (best >= Isa::avx512) {
      detail::gemm_avx512_sgemm(&r.s[2].mr, &r.s[2].nr, &r.s[2].ukr, &r.s[2].pack_a, &r.s[2].pack_b);
      detail::gemm_avx512_dgemm(&r.d[2].mr, &r.d[2].nr, &r.d[2].ukr, &r.d[2].pack_a, &r.d[2].pack_b);
      set_blocks(r.s[2], caches);
      set_blocks(r.d[2], caches);
    }
#endif
    return r;
  }();
  return ks;
}

template <typename T>
const Kernel<T>& kernel_for(Isa isa);
template <>
const Kernel<float>& kernel_for<float>(Isa isa) {
  return kernels().s[static_cast<int>(isa)];
}
template <>
const Kernel<double>& kernel_for<double>(Isa isa) {
  return kernels().d[static_cast<int>(isa)];
}

// ---------------------------------------------------------------- packing buffers

using detail::PackBuffer;

PackBuffer& a_buffer() { return detail::thread_pack_buffer<struct SgemmA>(); }
PackBuffer& b_buffer() { return detail::thread_pack_buffer<struct SgemmB>(); }

// ---------------------------------------------------------------- where op(B) comes from

// A matrix, packed by the kernel's pack_b (and prefetched ahead by gemm_small_m) ...
template <typename T>
struct MatrixB {
  PackB<T> pack_b;
  bool tb;
  const T* B;
  int64_t ldb;
  // rows [k0, k0 + kc) and columns [j0, j0 + nc) of op(B) into panels of stride ps (pack_b_generic's layout)
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t ps, T* dst) const {
    pack_b(tb, tb ? B + j0 * ldb + k0 : B + k0 * ldb + j0, ldb, kc, nc, ps, dst);
  }
  const T* at(int64_t k0, int64_t j0) const { return tb ? B + j0 * ldb + k0 : B + k0 * ldb + j0; }
  MatrixB columns_from(int64_t n0) const {
    MatrixB m = *this;
    m.B = at(0, n0);
    return m;
  }
  int64_t k_align() const { return tb ? 16 : 1; }  // the transposing pack works on 16 x 16 blocks
};

// ... or the caller's packing function (sgemm_packed_b), which writes the same layout from wherever op(B)'s
// values live (the convolution's implicit im2col).
struct FunctionB {
  const SgemmPackB* fn;
  int nr;
  int64_t j_base = 0;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t ps, float* dst) const {
    (*fn)(k0, kc, j_base + j0, nc, nr, ps, dst);
  }
  FunctionB columns_from(int64_t n0) const {
    FunctionB f = *this;
    f.j_base += n0;
    return f;
  }
  int64_t k_align() const { return 1; }
};

// ---------------------------------------------------------------- serial blocked GEMM on one rectangle

// Splits n into the fewest blocks of at most max_block, all of (nearly) equal size; returns the block size.
inline int64_t balanced_block(int64_t n, int64_t max_block) {
  if (n <= max_block) return std::max<int64_t>(n, 1);
  const int64_t blocks = (n + max_block - 1) / max_block;
  return (n + blocks - 1) / blocks;
}

// One row block (M <= MC; e.g. convolution with few output channels, where op(B) is large and each of its values
// is used only M times, so reading it from memory is the bottleneck). C is computed in stripes of GN columns x KC
// rows of K; each stripe's op(B) block is packed into L2 while the previous stripe computes: after each
// micro-kernel call one slice of the next block is packed and the following slice prefetched, so the memory
// latency overlaps the FMAs (a slice at a time: a whole block prefetched ahead would not fit L2 when ldb is a
// multiple of 4 KiB and all rows map to the same cache sets). When all of op(A) fits in L2 it is packed once and
// the stripe order is jc-major (C's stripe stays in L2 across K blocks); otherwise K-block-major, packing op(A)
// per K block.
template <typename T, typename Src>
void gemm_small_m(const Kernel<T>& ker, bool ta, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                  const Src& src, T beta, T* C, int64_t ldc) {
  const int MR = ker.mr, NR = ker.nr;
  const int64_t Mr = (M + MR - 1) / MR * MR;
  const bool whole = Mr * K * static_cast<int64_t>(sizeof(T)) <= ker.a_resident;
  // With op(A) resident, K blocks can be longer (fewer passes over C's stripe); the B panels then stream from L2.
  const int64_t KC = balanced_block(K, whole ? 2 * ker.kc : ker.kc);
  // Stripe width: at least 4 panels and 512 bytes per source row, so the packing reads long runs.
  const int64_t GN = std::min<int64_t>(std::max<int64_t>(4, 512 / static_cast<int64_t>(sizeof(T)) / NR) * NR,
                                       (N + NR - 1) / NR * NR);
  const int64_t nK = (K + KC - 1) / KC, nJ = (N + GN - 1) / GN, S = nK * nJ;
  T* abuf = static_cast<T*>(a_buffer().get(sizeof(T) * ((whole ? Mr * K : Mr * KC) + 64)));
  T* bbuf = static_cast<T*>(b_buffer().get(sizeof(T) * (2 * GN * KC + 64)));
  if (whole)
    for (int64_t pc = 0; pc < K; pc += KC)
      ker.pack_a(ta, ta ? A + pc * lda : A + pc, lda, M, std::min(KC, K - pc), abuf + M * pc);

  struct Stripe {
    int64_t jc, pc, nc, kc;
  };
  auto stripe = [&](int64_t s) {
    Stripe t;
    t.jc = (whole ? s / nK : s % nJ) * GN;
    t.pc = (whole ? s % nK : s / nJ) * KC;
    t.nc = std::min(GN, N - t.jc);
    t.kc = std::min(KC, K - t.pc);
    return t;
  };
  // Packs rows [k0, k1) of stripe t's op(B) block into dst (panel stride t.kc).
  auto pack_slice = [&](const Stripe& t, int64_t k0, int64_t k1, T* dst) {
    if (k1 <= k0) return;
    src.pack(t.pc + k0, k1 - k0, t.jc, t.nc, t.kc, dst + k0 * NR);
  };
  // Prefetch plan for rows [k0, k1) of stripe t's op(B) block (source rows of `lines` cache lines).
  struct Plan {
    const void* p = nullptr;
    int64_t ld = 0, lines = 0, n = 0;
  };
  auto plan = [&](const Stripe& t, int64_t k0, int64_t k1) {
    Plan pl;
    if constexpr (!std::is_same_v<Src, MatrixB<T>>) {
      return pl;  // a packing function reads what it reads: nothing to prefetch for it
    } else {
      if (k1 <= k0) return pl;
      const bool tb = src.tb;
      const int64_t ldb = src.ldb;
      const T* p = src.at(t.pc + k0, t.jc);
      const int64_t rows = tb ? t.nc : k1 - k0;
      const int64_t bytes = (tb ? k1 - k0 : t.nc) * static_cast<int64_t>(sizeof(T));
      pl.ld = ldb * static_cast<int64_t>(sizeof(T));
      // Rows not starting on a line boundary span one more line.
      const int64_t skew = pl.ld % 64 == 0 ? static_cast<int64_t>(reinterpret_cast<uintptr_t>(p) % 64) : 63;
      pl.p = static_cast<const char*>(static_cast<const void*>(p)) - (pl.ld % 64 == 0 ? skew : 0);
      pl.lines = (skew + bytes + 63) / 64;
      pl.n = rows * pl.lines;
      return pl;
    }
  };
  Stripe cur = stripe(0);
  pack_slice(cur, 0, cur.kc, bbuf);
  for (int64_t s = 0; s < S; ++s) {
    T* bcur = bbuf + (s % 2) * GN * KC;
    T* bnext = bbuf + ((s + 1) % 2) * GN * KC;
    const bool has_next = s + 1 < S;
    const Stripe next = has_next ? stripe(s + 1) : Stripe{0, 0, 0, 0};
    if (!whole && cur.jc == 0) ker.pack_a(ta, ta ? A + cur.pc * lda : A + cur.pc, lda, M, cur.kc, abuf);
    const T* ablk = whole ? abuf + M * cur.pc : abuf;
    const T beta_k = cur.pc == 0 ? beta : T(1);
    // Slices of the next block: about one per micro-kernel call; multiples of 16 rows of K when op(B) is
    // transposed (its pack transposes 16 x 16 blocks).
    const int64_t calls = ((cur.nc + NR - 1) / NR) * ((M + MR - 1) / MR);
    int64_t slice = (next.kc + calls - 1) / calls;
    slice = (slice + src.k_align() - 1) / src.k_align() * src.k_align();
    // Call c prefetches slice c of the next block and is followed by packing slice c - 1 (prefetched during the
    // previous call).
    int64_t done = 0, fetched = 0;
    for (int64_t jr = 0; jr < cur.nc; jr += NR) {
      const int64_t nr = std::min<int64_t>(NR, cur.nc - jr);
      const T* bp = bcur + jr * cur.kc;
      T* cc = C + cur.jc + jr;
      for (int64_t ir = 0; ir < M; ir += MR) {
        const int64_t e = std::min(fetched + slice, next.kc);
        const Plan pl = plan(next, fetched, e);
        ker.ukr(std::min<int64_t>(MR, M - ir), nr, cur.kc, ablk + ir * cur.kc, bp, cc + ir * ldc, ldc, alpha, beta_k,
                pl.p, pl.ld, pl.lines, pl.n);
        pack_slice(next, done, fetched, bnext);
        done = fetched;
        fetched = e;
      }
    }
    pack_slice(next, done, next.kc, bnext);
    cur = next;
  }
}

// C[0:M, 0:nc] (=|+=) alpha * op(A)[0:M, pc:pc+kc] * (a packed block of op(B): panel j at bblk + j*NR*ps, ps >= kc),
// op(A)'s rows packed MC at a time into abuf. beta_k: C's factor (beta for the first K block, then 1).
template <typename T>
void multiply_rows(const Kernel<T>& ker, bool ta, int64_t M, int64_t MC, const T* A, int64_t lda, int64_t pc,
                   int64_t kc, const T* bblk, int64_t ps, int64_t nc, T alpha, T beta_k, T* C, int64_t ldc, T* abuf) {
  const int MR = ker.mr, NR = ker.nr;
  for (int64_t ic = 0; ic < M; ic += MC) {
    const int64_t mc = std::min(MC, M - ic);
    ker.pack_a(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, abuf);
    for (int64_t jr = 0; jr < nc; jr += NR) {
      const int64_t nr = std::min<int64_t>(NR, nc - jr);
      const T* bp = bblk + jr * ps;
      T* cc = C + ic * ldc + jr;
      for (int64_t ir = 0; ir < mc; ir += MR)
        ker.ukr(std::min<int64_t>(MR, mc - ir), nr, kc, abuf + ir * kc, bp, cc + ir * ldc, ldc, alpha, beta_k,
                nullptr, 0, 0, 0);
    }
  }
}

template <typename T, typename Src>
void gemm_serial(const Kernel<T>& ker, bool ta, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const Src& src, T beta, T* C, int64_t ldc) {
  const int MR = ker.mr, NR = ker.nr;
  // K blocks of equal size (a short last block would pay the per-tile overhead for little work).
  const int64_t KC = balanced_block(K, ker.kc);
  // row blocks of (nearly) equal size, so the last is not a sliver: 1024 rows in blocks of at most 252 are 5 of
  // 210 or less rather than 4 of 252 and one of 16
  const int64_t MC = (balanced_block(M, ker.mc) + MR - 1) / MR * MR;
  const int64_t NC = std::min<int64_t>(ker.nc, (N + NR - 1) / NR * NR);

  if (M <= MC) {
    gemm_small_m(ker, ta, M, N, K, alpha, A, lda, src, beta, C, ldc);
    return;
  }

  T* abuf = static_cast<T*>(a_buffer().get(sizeof(T) * (MC * KC + 64)));
  T* bbuf = static_cast<T*>(b_buffer().get(sizeof(T) * (NC * KC + 64)));
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      src.pack(pc, kc, jc, nc, kc, bbuf);
      multiply_rows(ker, ta, M, MC, A, lda, pc, kc, bbuf, kc, nc, alpha, pc == 0 ? beta : T(1), C + jc, ldc, abuf);
    }
  }
}

// ---------------------------------------------------------------- the driver: empty products, then threads

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (detail::empty_product(M, N, K, alpha, beta, C, ldc)) return;
  const Kernel<T> ker = with_env_blocks(kernel_for<T>(current_isa()));
  // Below ~1 MFLOP per thread the fork/join costs more than it saves; the transposing packs cost more per value.
  detail::split_over_threads(M, N, K, ker.mr, ker.nr, 1.0e6, ta ? 1.0 : 3.0, tb ? 3.0 : 1.0,
                             [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
                               const T* a = ta ? A + m0 : A + m0 * lda;
                               gemm_serial(ker, ta, m1 - m0, n1 - n0, K, alpha, a, lda,
                                           MatrixB<T>{ker.pack_b, tb, B, ldb}.columns_from(n0), beta,
                                           C + m0 * ldc + n0, ldc);
                             });
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm<float>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_packed_b(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const SgemmPackB& pack_b, float beta, float* C, int64_t ldc) {
  if (detail::empty_product(M, N, K, alpha, beta, C, ldc)) return;
  const Kernel<float> ker = with_env_blocks(kernel_for<float>(current_isa()));
  detail::split_over_threads(M, N, K, ker.mr, ker.nr, 1.0e6, trans_a ? 1.0 : 3.0, 1.0,
                             [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
                               const float* a = trans_a ? A + m0 : A + m0 * lda;
                               gemm_serial(ker, trans_a, m1 - m0, n1 - n0, K, alpha, a, lda,
                                           FunctionB{&pack_b, ker.nr}.columns_from(n0), beta,
                                           C + m0 * ldc + n0, ldc);
                             });
}

int sgemm_panel_width() { return kernel_for<float>(current_isa()).nr; }

template <typename T>
int64_t gemm_packed_b_size(int64_t K, int64_t N) {
  const int nr = kernel_for<T>(current_isa()).nr;
  return (N + nr - 1) / nr * nr * K;
}

template <typename T>
GemmPackedB<T> gemm_pack_b(const T* B, int64_t ldb, int64_t K, int64_t N, T* dst) {
  const Kernel<T>& ker = kernel_for<T>(current_isa());
  if (reinterpret_cast<uintptr_t>(dst) % 64 != 0)
    throw std::invalid_argument("gemm_pack_b: the panels must be 64-byte aligned");
  ker.pack_b(false, B, ldb, K, N, K, dst);
  return {dst, K, N, ker.nr};
}

template <typename T>
GemmPackedB<T> gemm_packed_b_layout(T* dst, int64_t K, int64_t N) {
  if (reinterpret_cast<uintptr_t>(dst) % 64 != 0)
    throw std::invalid_argument("gemm_packed_b_layout: the panels must be 64-byte aligned");
  return {dst, K, N, kernel_for<T>(current_isa()).nr};
}

// K in blocks of kc (C = sum of the blocks' products, each block's sums started afresh as in gemm_serial), M in
// blocks of mc packed per K block (or, not transposed and in K blocks of at most rows_kc, read in place); B read
// from its panels in place.
template <typename T>
void gemm_prepacked_b(int64_t M, const T* A, int64_t lda, const GemmPackedB<T>& B, T* C, int64_t ldc, bool trans_a,
                      T beta) {
  const int64_t K = B.K, N = B.N;
  if (detail::empty_product(M, N, K, T(1), beta, C, ldc)) return;
  const Kernel<T> ker = with_env_blocks(kernel_for<T>(current_isa()));
  if (ker.nr != B.nr)
    throw std::logic_error("gemm_prepacked_b: B was packed for panels of " + std::to_string(B.nr) +
                           " columns, the kernel in force takes " + std::to_string(ker.nr));
  const int MR = ker.mr, NR = ker.nr;
  const int64_t KC = balanced_block(K, ker.kc);
  // op(A) not transposed and in short K blocks (Winograd's transformed tiles, K their channels): its rows are read
  // in place by the micro-kernel; packing them (an 8 x 8 transpose a block) had taken 6% of Winograd's forward on
  // ResNet18's 64-channel layers. In place, 64 channels ran 1.06x, 128 1.02-1.03x; 256 0.98-1.0x and 512 0.95x
  // (longer rows: probably a walk over six rows, which the prefetchers follow less well than one packed panel),
  // hence rows_kc (AVX2 Zen 4 guest, paired in one process). The products are the same, in the same order.
  if (!trans_a && ker.ukr_rows && KC <= ker.rows_kc) {
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      for (int64_t jr = 0; jr < N; jr += NR) {
        const T* bp = B.panels + pc * NR + jr * K;
        for (int64_t ir = 0; ir < M; ir += MR)
          ker.ukr_rows(std::min<int64_t>(MR, M - ir), std::min<int64_t>(NR, N - jr), kc, A + ir * lda + pc, lda, bp,
                       C + ir * ldc + jr, ldc, T(1), pc == 0 ? beta : T(1));
      }
    }
    return;
  }
  const int64_t MC = (balanced_block(M, ker.mc) + MR - 1) / MR * MR;
  T* abuf = static_cast<T*>(a_buffer().get(sizeof(T) * (MC * KC + 64)));
  for (int64_t pc = 0; pc < K; pc += KC) {
    const int64_t kc = std::min(KC, K - pc);
    multiply_rows(ker, trans_a, M, MC, A, lda, pc, kc, B.panels + pc * NR, K, N, T(1), pc == 0 ? beta : T(1), C,
                  ldc, abuf);
  }
}

template int64_t gemm_packed_b_size<float>(int64_t, int64_t);
template int64_t gemm_packed_b_size<double>(int64_t, int64_t);
template GemmPackedB<float> gemm_pack_b<float>(const float*, int64_t, int64_t, int64_t, float*);
template GemmPackedB<double> gemm_pack_b<double>(const double*, int64_t, int64_t, int64_t, double*);
template GemmPackedB<float> gemm_packed_b_layout<float>(float*, int64_t, int64_t);
template GemmPackedB<double> gemm_packed_b_layout<double>(double*, int64_t, int64_t);
template void gemm_prepacked_b<float>(int64_t, const float*, int64_t, const GemmPackedB<float>&, float*, int64_t, bool,
                                       float);
template void gemm_prepacked_b<double>(int64_t, const double*, int64_t, const GemmPackedB<double>&, double*, int64_t,
                                        bool, double);

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm<double>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

SgemmBlocks sgemm_blocks() {
  const Kernel<float> k = with_env_blocks(kernel_for<float>(current_isa()));
  return {k.mr, k.nr, k.kc, k.mc, k.nc};
}

SgemmBlocks sgemm_blocks_for(int mr, int nr, const CacheInfo& caches) {
  Kernel<float> k;
  k.mr = mr, k.nr = nr;
  set_blocks(k, caches);
  return {k.mr, k.nr, k.kc, k.mc, k.nc};
}

std::string SgemmBlocks::str() const {
  return std::to_string(mr) + "x" + std::to_string(nr) + " kernel, kc " + std::to_string(kc) + ", mc " +
         std::to_string(mc) + ", nc " + std::to_string(nc);
}

const char* sgemm_kernel_name() {
  switch (current_isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "portable";
  }
}

// Reference: for each (i, j) the dot product over k accumulated in double, in blocks of 64 x 64 of C so the
// rows of op(A) and columns of op(B) involved stay in cache.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  constexpr int64_t BS = 64;
  for (int64_t i0 = 0; i0 < M; i0 += BS)
    for (int64_t j0 = 0; j0 < N; j0 += BS)
      for (int64_t i = i0; i < std::min(M, i0 + BS); ++i)
        for (int64_t j = j0; j < std::min(N, j0 + BS); ++j) {
          double s = 0.0;
          for (int64_t k = 0; k < K; ++k) {
            const double a = trans_a ? A[k * lda + i] : A[i * lda + k];
            const double b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
            s += a * b;
          }
          float& c = C[i * ldc + j];
          const double prev = beta == 0.0f ? 0.0 : static_cast<double>(beta) * static_cast<double>(c);
          c = static_cast<float>(static_cast<double>(alpha) * s + prev);
        }
}

}  // namespace dl::cpu
