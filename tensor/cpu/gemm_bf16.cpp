// bfloat16 GEMM driver: kernel choice, cache blocking, threads; the portable kernel, the reference, conversions.
//
// Threads as in the float32 GEMM (gemm.cpp, the split shared in gemm_common.h): C is split into a grid of rectangles, one per OpenMP thread, and each
// thread runs a serial blocked GEMM on its rectangle with its own packing buffers (thread_local, kept). The serial
// loop order differs from sgemm's because the AMX kernel holds C in tiles, not registers:
//   (outer K blocks of up to KB, see gemm_serial)
//   jc over N by NC:  pack op(B)[all KB, jc:+NC] as bf16 (NR-column panels)                 (L3)
//     ic over M by MC:  pack op(A)[ic:+MC, all KB] as bf16 (MR-row panels)                  (L2)
//       jr over NR panels:  pc over K by KC:  ir over MR panels: micro-kernel on K [pc, pc+KC)
// The B sub-panel (KC x NR) stays in L1 while the A sub-panels stream from L2 (a 2 x 2 tile kernel loads 4 KiB
// per 64 cycles of tdpbf16ps: L2 can feed one operand at that rate, not both), and the C strip of the jr panel
// (MC x NR floats, kept by AMX in a contiguous scratch) stays in L1/L2 across the K blocks, so saving and reloading
// the tiles per K block is cheap. (sgemm's order, pc outside ic, sweeps all of M x NC of C between two K blocks,
// so C came from L3 each time.)
// Packing is where float32 becomes bfloat16 (round to nearest even); op(A) is packed once per NC columns,
// op(B) once. beta is applied once per element of C: by AVX512_BF16 at the first K block (later ones add), by AMX
// at the last (partial sums live in the scratch until then).
// Kernels (chosen by CPUID on every call; DL_BF16_KERNEL forces one the machine can run):
//   amx          tdpbf16ps on 32 x 32 blocks of C (gemm_bf16_amx.cpp), needs Linux's tile-data permission;
//   avx512_bf16  vdpbf16ps, 14 x 32 register block (gemm_bf16_avx512.cpp);
//   portable     rounds op(A) and op(B) to bf16 into float32 copies and calls sgemm: each product of two bf16
//                values is exact in float32, so sgemm's fused multiply-adds sum exactly the bf16 products.
// Cache blocks from the CPU's cache sizes (sysconf, see set_blocks): KC so the B sub-panel fills half of L1d, the
// packed A block half of L2, the packed B block twice the L2 size (it lives in L3, whose per-core share sysconf
// does not tell). DL_BF16_BLOCKS="kc,a_kib,b_kib" overrides them (read once, at first use; for tuning).
#include "tensor/cpu/gemm_bf16.h"

#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "tensor/cpu/convert16.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_bf16_kernel.h"
#include "tensor/cpu/gemm_common.h"

namespace dl::cpu {
namespace {

using detail::Bf16Kernel;

#if defined(__x86_64__) || defined(_M_X64)
#define DL_BF16_X86 1
#else
#define DL_BF16_X86 0
#endif

enum class Kind { portable = 0, avx512_bf16 = 1, amx = 2 };

bool cpu_has_avx512_bf16() {
#if DL_BF16_X86
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  }();
  return ok;
#else
  return false;
#endif
}

// CPUID says AMX, and Linux grants this process the tile data state (asked once; without it tile instructions
// fault). ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 (<asm/prctl.h> of recent kernels only).
bool amx_usable() {
#if DL_BF16_X86 && defined(SYS_arch_prctl)
  static const bool ok = [] {
    if (!cpu_has_avx512_bf16() || !__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16"))
      return false;
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

bool available(Kind k) {
  switch (k) {
    case Kind::amx:
      return amx_usable();
    case Kind::avx512_bf16:
      return cpu_has_avx512_bf16();
    default:
      return true;
  }
}

Kind best_kind() {
  if (available(Kind::amx)) return Kind::amx;
  if (available(Kind::avx512_bf16)) return Kind::avx512_bf16;
  return Kind::portable;
}

bool parse_kind(const char* s, Kind* k) {
  if (s == nullptr) return false;
  if (std::strcmp(s, "amx") == 0) return *k = Kind::amx, true;
  if (std::strcmp(s, "avx512_bf16") == 0) return *k = Kind::avx512_bf16, true;
  if (std::strcmp(s, "portable") == 0) return *k = Kind::portable, true;
  return false;
}

// Read on every call so tests can switch with setenv; a kernel the machine lacks gives the best one it has.
Kind current_kind() {
  Kind want;
  if (parse_kind(std::getenv("DL_BF16_KERNEL"), &want) && available(want)) return want;
  return best_kind();
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::amx:
      return "amx";
    case Kind::avx512_bf16:
      return "avx512_bf16";
    default:
      return "portable";
  }
}

struct Blocked {
  Bf16Kernel k;
  int64_t kc = 0;                      // K block of one micro-kernel call (a multiple of k.ku)
  int64_t a_bytes = 0, b_bytes = 0;    // packed A block (MC x K) and B block (K x NC), bf16
};

long cache_bytes(int name, long fallback) {
  const long v = sysconf(name);
  return v > 0 ? v : fallback;
}

void set_blocks(Blocked& b) {
  const long l1 = cache_bytes(_SC_LEVEL1_DCACHE_SIZE, 32 << 10), l2 = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
  const int64_t unit = std::max(32, b.k.ku);
  // The B sub-panel (KC x NR bf16) in half of L1d: 48 KiB L1d -> KC = 384.
  int64_t kc = std::clamp<int64_t>(l1 / 2 / (2 * b.k.nr) / unit * unit, unit, 2048);
  int64_t a = l2 / 2, bb = 2 * l2;
  if (const char* env = std::getenv("DL_BF16_BLOCKS")) {
    long k2 = 0, a2 = 0, b2 = 0;
    if (std::sscanf(env, "%ld,%ld,%ld", &k2, &a2, &b2) == 3 && k2 > 0 && a2 > 0 && b2 > 0)
      kc = (k2 + unit - 1) / unit * unit, a = a2 << 10, bb = b2 << 10;
  }
  b.kc = kc;
  b.a_bytes = a;
  b.b_bytes = bb;
}

const Blocked& kernel_for(Kind kind) {
  static const Blocked* table = [] {
    static Blocked t[3];
#if DL_BF16_X86
    if (cpu_has_avx512_bf16()) {
      detail::bf16_avx512_kernel(&t[1].k);
      set_blocks(t[1]);
    }
    if (amx_usable()) {
      detail::bf16_amx_kernel(&t[2].k);
      set_blocks(t[2]);
    }
#endif
    return t;
  }();
  return table[static_cast<int>(kind)];
}

// ---------------------------------------------------------------- packing buffers

using detail::PackBuffer;

PackBuffer& a_buffer() { return detail::thread_pack_buffer<struct Bf16A>(); }
PackBuffer& b_buffer() { return detail::thread_pack_buffer<struct Bf16B>(); }
PackBuffer& c_buffer() { return detail::thread_pack_buffer<struct Bf16C>(); }

// ---------------------------------------------------------------- serial blocked GEMM on one rectangle

// Splits n into the fewest blocks of at most max_block, of (nearly) equal size rounded up to a multiple of unit.
inline int64_t balanced_block(int64_t n, int64_t max_block, int64_t unit) {
  const int64_t blocks = std::max<int64_t>(1, (n + max_block - 1) / max_block);
  const int64_t b = (n + blocks - 1) / blocks;
  return (b + unit - 1) / unit * unit;
}

// op(B) as row pointers (gemm_bf16_rows): element (k, j) is rows[k][col + j]. b_at moves any B to element (k, j).
struct RowsB {
  const uint16_t* const* rows;
  int64_t col;
};
template <typename S>
inline const S* b_at(const S* B, bool tb, int64_t ldb, int64_t k, int64_t j) {
  return tb ? B + j * ldb + k : B + k * ldb + j;
}
inline RowsB b_at(RowsB B, bool, int64_t, int64_t k, int64_t j) { return {B.rows + k, B.col + j}; }

template <typename S>
void pack_a(const Bf16Kernel& k, bool t, const S* A, int64_t lda, int64_t mc, int64_t kc, uint16_t* dst) {
  if constexpr (sizeof(S) == 4)
    k.pack_a_f32(t, A, lda, mc, kc, dst);
  else
    k.pack_a_b16(t, A, lda, mc, kc, dst);
}
template <typename S>
void pack_b(const Bf16Kernel& k, bool t, const S* B, int64_t ldb, int64_t nc, int64_t kc, uint16_t* dst) {
  if constexpr (sizeof(S) == 4)
    k.pack_b_f32(t, B, ldb, nc, kc, dst);
  else
    k.pack_b_b16(t, B, ldb, nc, kc, dst);
}
inline void pack_b(const Bf16Kernel& k, bool, RowsB B, int64_t, int64_t nc, int64_t kc, uint16_t* dst) {
  k.pack_b_rows(B.rows, B.col, nc, kc, dst);
}

template <typename S, typename BOp>
void gemm_kblock(const Blocked& bl, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const S* A,
                 int64_t lda, BOp B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const Bf16Kernel& k = bl.k;
  const int MR = k.mr, NR = k.nr, KU = k.ku;
  const int64_t Kp = (K + KU - 1) / KU * KU;
  const int64_t KC = balanced_block(Kp, bl.kc, KU);
  const int64_t Mr = (M + MR - 1) / MR * MR, Nr = (N + NR - 1) / NR * NR;
  // Blocks of all of this K; at least one panel each, of (nearly) equal sizes.
  const int64_t MC = balanced_block(Mr, std::max<int64_t>(MR, bl.a_bytes / (2 * Kp) / MR * MR), MR);
  const int64_t NC = balanced_block(Nr, std::max<int64_t>(NR, bl.b_bytes / (2 * Kp) / NR * NR), NR);
  uint16_t* abuf = static_cast<uint16_t*>(a_buffer().get(2 * static_cast<size_t>(MC * Kp + 64)));
  uint16_t* bbuf = static_cast<uint16_t*>(b_buffer().get(2 * static_cast<size_t>(NC * Kp + 64)));
  // The micro-kernels' scratch for the C blocks of one jr strip (MC x NR floats).
  float* cbuf = static_cast<float*>(c_buffer().get(sizeof(float) * static_cast<size_t>(MC * NR)));
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    pack_b(k, tb, b_at(B, tb, ldb, 0, jc), ldb, nc, K, bbuf);
    for (int64_t ic = 0; ic < M; ic += MC) {
      const int64_t mc = std::min(MC, M - ic);
      pack_a(k, ta, ta ? A + ic : A + ic * lda, lda, mc, K, abuf);
      for (int64_t jr = 0; jr < nc; jr += NR) {
        const int64_t nr = std::min<int64_t>(NR, nc - jr);
        for (int64_t pc = 0; pc < Kp; pc += KC) {
          const int64_t kcp = std::min(KC, Kp - pc);
          const uint16_t* bp = bbuf + jr * Kp + pc * NR;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = std::min<int64_t>(MR, mc - ir);
            k.ukr(mr, nr, kcp, abuf + ir * Kp + pc * MR, bp, C + (ic + ir) * ldc + jc + jr, ldc, alpha, beta,
                  cbuf + ir * NR, pc == 0, pc + kcp >= Kp);
          }
        }
      }
    }
  }
}

// K is split into outer blocks of at most KB so the packed A block (MC x KB) still holds at least 256 rows: with
// all of a long K (4608) in it, MC fell to 96 rows and each B sub-panel, fetched from L3, served only three
// micro-kernel calls. C accumulates across outer blocks (beta for the first, 1 after).
template <typename S, typename BOp>
void gemm_serial(const Blocked& bl, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const S* A,
                 int64_t lda, BOp B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t unit = std::max<int64_t>(bl.kc, bl.k.ku);
  const int64_t KB = balanced_block(K, std::max(unit, bl.a_bytes / (2 * 256) / unit * unit), bl.k.ku);
  if (bl.k.begin) bl.k.begin();
  for (int64_t k0 = 0; k0 < K; k0 += KB)
    gemm_kblock(bl, ta, tb, M, N, std::min(KB, K - k0), alpha, ta ? A + k0 * lda : A + k0, lda,
                b_at(B, tb, ldb, k0, 0), ldb, k0 == 0 ? beta : 1.0f, C, ldc);
  if (bl.k.end) bl.k.end();
}

// ---------------------------------------------------------------- portable: round into float copies, sgemm

// rows x cols of X (stride ld) rounded to bf16 values held as float, dense (stride cols).
template <typename S>
std::vector<float> rounded_copy(const S* X, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      if constexpr (sizeof(S) == 4)
        out[static_cast<size_t>(r * cols + c)] = bf16_to_float(float_to_bf16(X[r * ld + c]));
      else
        out[static_cast<size_t>(r * cols + c)] = bf16_to_float(X[r * ld + c]);
    }
  return out;
}

template <typename S>
void gemm_portable(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const S* A, int64_t lda,
                   const S* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  const std::vector<float> a = rounded_copy(A, ar, ac, lda), b = rounded_copy(B, br, bc, ldb);
  sgemm(ta, tb, M, N, K, alpha, a.data(), ac, b.data(), bc, beta, C, ldc);
}
// Row-pointer B: gathered into a dense K x N copy first (the portable kernel is the reference path).
template <typename S>
void gemm_portable(bool ta, bool, int64_t M, int64_t N, int64_t K, float alpha, const S* A, int64_t lda, RowsB B,
                   int64_t, float beta, float* C, int64_t ldc) {
  std::vector<uint16_t> dense(static_cast<size_t>(K * N));
  for (int64_t k = 0; k < K; ++k) std::memcpy(dense.data() + k * N, B.rows[k] + B.col, sizeof(uint16_t) * N);
  gemm_portable<S>(ta, false, M, N, K, alpha, A, lda, dense.data(), N, beta, C, ldc);
}

template <typename S, typename BOp>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const S* A, int64_t lda, BOp B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  if (detail::empty_product(M, N, K, alpha, beta, C, ldc)) return;
  const Kind kind = current_kind();
  if (kind == Kind::portable) {
    gemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const Blocked& bl = kernel_for(kind);
  // Below ~4 MFLOP per thread the fork/join costs more than it saves (the bf16 kernels are fast); each thread
  // packs its own rows of A and columns of B, about as costly as 16 multiply-adds per value.
  detail::split_over_threads(M, N, K, bl.k.mr, bl.k.nr, 4.0e6, 1.0, 1.0,
                             [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
                               const S* a = ta ? A + m0 : A + m0 * lda;
                               gemm_serial(bl, ta, tb, m1 - m0, n1 - n0, K, alpha, a, lda, b_at(B, tb, ldb, 0, n0),
                                           ldb, beta, C + m0 * ldc + n0, ldc);
                             });
}

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm<float, const float*>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm<uint16_t, const uint16_t*>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_rows(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                    const uint16_t* const* b_rows, float beta, float* C, int64_t ldc) {
  gemm<uint16_t, RowsB>(trans_a, false, M, N, K, alpha, A, lda, RowsB{b_rows, 0}, 0, beta, C, ldc);
}

const char* gemm_bf16_kernel_name() { return kind_name(current_kind()); }

bool gemm_bf16_kernel_available(const char* name) {
  Kind k;
  return parse_kind(name, &k) && available(k);
}

// For each (i, j) the dot product of the rounded operands in double, in blocks of 64 x 64 of C.
void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  auto r = [](float x) { return static_cast<double>(bf16_to_float(float_to_bf16(x))); };
  constexpr int64_t BS = 64;
  for (int64_t i0 = 0; i0 < M; i0 += BS)
    for (int64_t j0 = 0; j0 < N; j0 += BS)
      for (int64_t i = i0; i < std::min(M, i0 + BS); ++i)
        for (int64_t j = j0; j < std::min(N, j0 + BS); ++j) {
          double s = 0.0;
          for (int64_t k = 0; k < K; ++k)
            s += r(trans_a ? A[k * lda + i] : A[i * lda + k]) * r(trans_b ? B[j * ldb + k] : B[k * ldb + j]);
          float& c = C[i * ldc + j];
          const double prev = beta == 0.0f ? 0.0 : static_cast<double>(beta) * static_cast<double>(c);
          c = static_cast<float>(static_cast<double>(alpha) * s + prev);
        }
}

// The conversions are the dtype's (tensor/half.h) and the copy kernel's vector loops (convert16.h): one rounding
// rule everywhere. BFloat16 is a struct of the same 16 bits.
uint16_t float_to_bf16(float x) { return half_detail::float_to_bf16_bits(x); }
float bf16_to_float(uint16_t b) { return half_detail::bf16_bits_to_float(b); }
void float_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  float_to_bfloat16(reinterpret_cast<BFloat16*>(dst), src, n);
}
void bf16_to_float(const uint16_t* src, float* dst, int64_t n) {
  bfloat16_to_float(dst, reinterpret_cast<const BFloat16*>(src), n);
}

double measure_bf16_peak_gflops(const char* kernel, int threads, double seconds) {
  Kind k;
  if (!parse_kind(kernel, &k) || !available(k) || k == Kind::portable) return 0.0;
#if DL_BF16_X86
  std::vector<double> rate(static_cast<size_t>(std::max(threads, 1)), 0.0);
#pragma omp parallel num_threads(std::max(threads, 1))
  {
    double flops = 0.0;
    const double s = k == Kind::amx ? detail::bf16_amx_peak_loop(seconds, &flops)
                                    : detail::bf16_avx512_peak_loop(seconds, &flops);
    rate[static_cast<size_t>(omp_get_thread_num())] = flops / s / 1e9;
  }
  double sum = 0.0;
  for (double r : rate) sum += r;
  return sum;
#else
  (void)threads, (void)seconds;
  return 0.0;
#endif
}

}  // namespace dl::cpu
