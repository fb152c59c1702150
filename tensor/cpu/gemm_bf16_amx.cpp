// bfloat16 GEMM: AMX tile micro-kernel and the tdpbf16ps peak loop. Compiled with -mamx-tile -mamx-bf16 and the
// AVX-512 flags; only called after gemm_bf16.cpp checked CPUID AND obtained the tile-data permission from Linux
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), without which the first tile instruction faults.
//
// Why this blocking: AMX has 8 tile registers of 1 KiB. The micro-kernel keeps a 32 x 32 block of C in four
// 16 x 16 float tiles (0-3) and, per 32 values of k, loads two A tiles (4, 5: 16 rows x 32 bf16) and two B tiles
// (6, 7: 16 pairs of k x 16 columns, VNNI layout) for four tdpbf16ps: each loaded tile is used twice, which is the
// most reuse eight tiles allow. The packing (gemm_bf16_avx512.cpp) lays each tile out as 1 KiB of contiguous
// 64-byte rows, so every tile load is one contiguous stream.
//
// Partial sums stay in the tiles for one K block (KC, see gemm_bf16.cpp) and in a 4 KiB scratch per C block between
// K blocks; C is read and written once.
//
// Tile configuration is per thread and per kernel state: begin() loads it at the start of each thread's share of a
// GEMM and end() releases the tiles. A thread_local "configured" flag alone is not enough, because other code in
// the same thread (PyTorch/oneDNN in the same process, for instance) may load its own configuration or release the
// tiles between two of our calls; ldtilecfg costs well under a microsecond, negligible next to any GEMM. Releasing
// at the end also means an idle thread carries no 8 KiB of tile state through context switches.
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "tensor/cpu/gemm_bf16_kernel.h"

namespace dl::cpu::detail {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id = 0;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// All eight tiles 16 rows x 64 bytes (C: 16 x 16 float, A: 16 x 32 bf16, B: 16 pairs x 16 columns).
void amx_begin() {
  TileConfig cfg;
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  // Not _tile_loadconfig(&cfg): GCC 12 does not see that builtin read the 64 bytes and drops the stores to colsb
  // and rows as dead (the tiles then stay unconfigured and the first tile instruction raises SIGILL).
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
}

void amx_end() { _tile_release(); }

// A panel: per 32 k, tile rows 0-15 (512 u16) then 16-31; B panel: per 32 k, columns 0-15 then 16-31.
// Between K blocks the partial sums live in acc (32 x 32 floats, rows of 128 bytes), not in C: C's rows are ldc
// apart, and when that is a multiple of 4 KiB the 16 rows of a tile share one L1 set and tile loads/stores of C
// miss. C is touched once, at the last K block: full 32 x 32 blocks with alpha == 1 and beta == 0 are stored
// straight from the tiles, anything else goes through acc and AVX-512.
void amx_ukr(int64_t mr, int64_t nr, int64_t kcp, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
             float alpha, float beta, float* acc, bool first, bool last) {
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  } else {
    _tile_loadd(0, acc, 128);
    _tile_loadd(1, acc + 16, 128);
    _tile_loadd(2, acc + 16 * 32, 128);
    _tile_loadd(3, acc + 16 * 32 + 16, 128);
  }
  for (int64_t k = 0; k < kcp; k += 32, a += 1024, b += 1024) {
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, 64);
    _tile_loadd(5, a + 512, 64);
    _tile_loadd(7, b + 512, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  if (last && mr == 32 && nr == 32 && alpha == 1.0f && beta == 0.0f) {
    const int64_t ldcb = ldc * static_cast<int64_t>(sizeof(float));
    _tile_stored(0, c, ldcb);
    _tile_stored(1, c + 16, ldcb);
    _tile_stored(2, c + 16 * ldc, ldcb);
    _tile_stored(3, c + 16 * ldc + 16, ldcb);
    return;
  }
  _tile_stored(0, acc, 128);
  _tile_stored(1, acc + 16, 128);
  _tile_stored(2, acc + 16 * 32, 128);
  _tile_stored(3, acc + 16 * 32 + 16, 128);
  if (!last) return;
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t i = 0; i < mr; ++i) {
    float* cr = c + i * ldc;
    for (int64_t j = 0; j < nr; j += 16) {
      const int n = static_cast<int>(std::min<int64_t>(16, nr - j));
      const __mmask16 m = n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
      __m512 r = _mm512_mul_ps(_mm512_load_ps(acc + i * 32 + j), va);
      if (beta != 0.0f) r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, cr + j), vb, r);
      _mm512_mask_storeu_ps(cr + j, m, r);
    }
  }
}

}  // namespace

void bf16_amx_kernel(Bf16Kernel* k) {
  bf16_amx_packing(k);
  k->ukr = &amx_ukr;
  k->begin = &amx_begin;
  k->end = &amx_end;
}

// The micro-kernel's tile pattern without its memory traffic: four accumulators (0-3), each source tile (4-7)
// used twice per four tdpbf16ps, loaded once before the loop. (Six accumulators fed by the same two source tiles
// measured about 10% slower on Sapphire Rapids than this pattern.) 16 x 16 x 32 x 2 = 16384 FLOP per tdpbf16ps.
double bf16_amx_peak_loop(double seconds, double* flops) {
  amx_begin();
  alignas(64) uint16_t src[512];
  for (int i = 0; i < 512; ++i) src[i] = 0x3400;  // 2^-23: the accumulators stay small and finite
  _tile_loadd(4, src, 64);
  _tile_loadd(5, src, 64);
  _tile_loadd(6, src, 64);
  _tile_loadd(7, src, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  constexpr int64_t kIter = 1 << 12;
  const auto t0 = std::chrono::steady_clock::now();
  double el = 0.0;
  int64_t reps = 0;
  do {
    for (int64_t r = 0; r < kIter; ++r) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    ++reps;
    el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (el < seconds);
  alignas(64) float out[256];
  _tile_stored(0, out, 64);
  volatile float sink = out[0];
  (void)sink;
  amx_end();
  *flops = static_cast<double>(reps) * kIter * 4 * 16384.0;
  return el;
}

}  // namespace dl::cpu::detail

#endif
