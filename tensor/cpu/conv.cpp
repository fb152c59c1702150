// CPU 2-D convolution: im2col + GEMM, several images per GEMM when their planes are small.
//
// For a chunk of B images and group g, with K = C/g * kh * kw rows and L = Ho * Wo columns per image:
//   forward          out (O/g, B*L)  = W_g (O/g, K) @ col (K, B*L)            col = im2col(x_g) of each image
//   backward input   col (K, B*L)    = W_g^T @ gout (O/g, B*L);  gx_g = col2im(col)
//   backward weight  gW_g (O/g, K)  += gout (O/g, B*L) @ col^T                summed over chunks
// Image b owns columns [b*L, (b+1)*L) of col. With B = 1 the GEMMs read and write the tensors in place;
// with B > 1 the gradient planes are gathered into (O/g, B*L) and the outputs scattered back, a copy
// that is small next to a GEMM with K >= 100 rows. A 1x1, stride-1, unpadded convolution needs no
// im2col: x_g (C/g, H*W) is already the col.
// B (see ConvTuning in conv.h) grows until the GEMM has about 512 columns: ResNet's 7x7 and 4x4 layers
// and the scratch CNN's 7x7 and 3x3 layers would otherwise run 49-, 16- and 9-column GEMMs, where the
// packing and the C updates cost more than the multiply-adds. On AVX-512, im2col and col2im take vector forms
// driven by per-tap tables (shifted planes, phase planes of strided layers, gathers; see im2col_tables);
// elsewhere planes narrower than 8 columns take im2col/col2im loops without a memcpy per row. 3x3 stride-1
// forwards and input gradients may run as Winograd F(2x2, 3x3), or F(4x4, 3x3) where ConvTuning::winograd_tile
// asks for it (winograd.cpp: channels-last tile blocks, the transformed kernels packed once for the GEMMs).
// Measured on one Zen 5 core, ResNet18's layers reach 160-270 GFLOP/s in all three passes.
//
// bfloat16 autocast (g.gemm_dtype, tensor/autocast.h): x, w and the output gradient are rounded to
// bfloat16 once per call (rounded_bf16), the same loops then run on 2-byte operands (S = uint16_t)
// with float32 outputs, and stride-1 forwards on planes of 400+ pixels take the implicit im2col
// (forward_implicit: the GEMM reads shifted rows of a padded input through pointers, no column
// matrix is written). Winograd stays float32 (and float64).
//
// Direct convolution (Algo::direct, conv_direct.h; AVX-512 or AVX2): no im2col and no GEMM. Each thread copies its images
// into a zero-padded channels-last buffer and register tiles of output positions x output channels sum
// broadcasts from the copy against packed weights; float32 and bfloat16 forwards, input gradients (as forwards of
// the output gradient: one with the flipped kernels for a stride-1 layer, one per phase of the input plane for a
// strided one; backward_input_direct), and weight gradients. The fixed rule takes it for most 3x3 and 7x7 forwards
// and stride-1 input gradients, and for the weight gradients of layers up to ~128 channels or on small planes
// (direct_fast_for); strided input gradients only where the search measures it faster.
//
// Planar convolution (Algo::planar, conv_planar.inc; AVX-512 or AVX2): forwards and weight gradients of layers
// with few input channels (a small CNN's first layer, ResNet's 7x7 / 2 stem), vectors along the output plane, NCHW
// in and out: no transposes, no column matrix (forward_planar, backward_weight_planar). The fixed rule takes it for
// every forward it can run and for small stride-1 weight gradients (planar_fast_for).
//
// Implicit GEMM (float32, Algo::packed): the same GEMMs, but the GEMM asks for its op(B) blocks through a packing
// function that gathers the im2col values straight from the images (forward_packed; the weight gradient's
// transposed col from a channels-last copy of the images or gathered, backward_weight_packed; a stride-1 input
// gradient runs as forward_packed of the output gradient with flipped kernels), so the column matrix is never
// written and read back. A strided input gradient under the same name: the transposed column matrix, its rows
// added into a channels-last buffer as runs (backward_input_channels_last).
//
// Which algorithm runs for a pass of a layer shape is measured once (choose_and_run; conv.h): the candidates are
// timed on the first call's data, the fastest kept for the process and in a cache file; DL_CONV_ALGO=heuristic
// keeps the fixed rules (heuristic_algo).
//
// Threads: with at least as many images as threads, each thread takes a contiguous share of the
// images and runs its chunks with single-threaded GEMMs and its own buffers (thread-local scratch,
// grown as needed, kept between calls); backward weight accumulates one partial gradient per thread
// and sums them at the end. With fewer images than threads (batch-1 inference), the images run one
// after another and the GEMM uses the threads itself.
#include "tensor/cpu/conv.h"

#include <algorithm>
#include <functional>
#include <array>
#include <chrono>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>

#include "tensor/cpu/avx2_transpose.h"
#endif

#include "tensor/cpu/conv_algo_cache.h"
#include "tensor/cpu/conv_direct.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_bf16.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/omp_threads.h"
#include "tensor/cpu/scratch.h"
#include "tensor/cpu/winograd.h"
#include "tensor/cpu/register.h"

namespace dl::cpu {

namespace {
// DL_CONV_COLUMNS=n, DL_CONV_WINOGRAD=0|2|4, DL_CONV_PACKED=0|1|2, DL_CONV_IM2COL=scalar, DL_CONV_DIRECT=0|1|2,
// DL_CONV_DIRECT_SPLIT=0|1|2, DL_CONV_WINOGRAD_DW_SPLIT=0|1|2 and DL_CONV_DIRECT_ISA=avx2|avx512 override the
// defaults (for measuring what each path buys; `bench --profile` shows the effect per kernel).
ConvTuning tuning_from_env() {
  ConvTuning t;
  if (const char* v = std::getenv("DL_CONV_COLUMNS"); v && std::atoll(v) > 0) t.target_columns = std::atoll(v);
  if (const char* v = std::getenv("DL_CONV_WINOGRAD"); v && std::string(v) == "0") t.winograd_min_channels = 0;
  if (const char* v = std::getenv("DL_CONV_WINOGRAD"); v && std::string(v) == "4") t.winograd_tile = 4;
  if (const char* v = std::getenv("DL_CONV_PACKED"); v && *v) t.packed_forward = std::atoi(v);
  if (const char* v = std::getenv("DL_CONV_IM2COL"); v && std::string(v) == "scalar") t.vector_im2col = false;
  if (const char* v = std::getenv("DL_CONV_DIRECT"); v && *v) t.direct = std::atoi(v);
  if (const char* v = std::getenv("DL_CONV_DIRECT_SPLIT"); v && *v) t.direct_grad_split = std::atoi(v);
  if (const char* v = std::getenv("DL_CONV_WINOGRAD_DW_SPLIT"); v && *v) t.winograd_dw_split = std::atoi(v);
  if (const char* v = std::getenv("DL_CONV_DIRECT_ISA"); v && *v)
    t.direct_isa = std::string(v) == "avx2" ? 1 : std::string(v) == "avx512" ? 2 : 0;
  return t;
}
}  // namespace

ConvTuning& conv_tuning() {
  static ConvTuning t = tuning_from_env();
  return t;
}

namespace {

// The layer's GEMMs: float32 ones in the precision autocast chose (g.gemm_dtype: bfloat16 operands with
// float32 sums, or plain float32), float64 ones in float64.
inline void gemm(const Conv2dParams& g, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (g.gemm_dtype == DType::BFloat16)
    gemm_bf16(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
  else
    sgemm(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(const Conv2dParams&, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* a,
                 int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  dgemm(ta, tb, M, N, K, 1.0, a, lda, b, ldb, beta, c, ldc);
}
// bfloat16 operands (raw bits), float32 sums
inline void gemm(const Conv2dParams&, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* a,
                 int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_bf16(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

// Scratch slots (tensor/cpu/scratch.h) used here (winograd.cpp uses 0, 1, 3, 15 and 16).
// kLowX and kLowW hold a layer's operands rounded to bfloat16, on the calling thread.
// kTables and kRowTables hold the packed algorithms' tables, kFlipped the weights of an input gradient run as a
// forward, kChannelsLast the packed weight gradient's copy of the images and the channels-last col2im's buffer,
// kPackedWeights that col2im's packed weights, kPhasePlanes the strided direct input gradient's phase planes (the
// direct and planar convolutions use 10-12 and 14-17).
enum Slot {
  kCol = 0, kGathered = 1, kAcc = 2, kPackedWeights = 4, kLowX = 5, kLowW = 6, kTables = 7, kFlipped = 8,
  kRowTables = 9, kDirectWeights = 13, kChannelsLast = 15, kPhasePlanes = 18
};

// How one pass of one layer is computed (chosen per layer shape by choose_and_run below):
//   gemm      im2col + GEMM, images batched until a GEMM has about `columns` columns
//   winograd  Winograd F(2x2, 3x3) (forward and input gradient), F(3x3, 2x2) (weight gradient); float32, float64
//   winograd4x4  Winograd F(4x4, 3x3): a quarter of the products and a larger rounding error; only where
//             ConvTuning::winograd_tile asks for it
//   implicit  the bfloat16 forward with an implicit im2col (forward_implicit)
//   packed    the float32 forward with the im2col matrix packed for the GEMM straight from the images
//             (forward_packed), `columns` as for gemm; for the input gradient of a stride-1 layer, the same
//             forward run on the output gradient with the flipped, transposed kernels (input_as_forward), of a
//             strided one the channels-last col2im (backward_input_channels_last); the weight gradient's
//             transposed matrix packed likewise (backward_weight_packed)
//   direct    the forward as a direct convolution on a channels-last copy (conv_direct.h; float32 or bfloat16
//             products); the input gradient likewise as forwards (backward_input_direct); the weight gradient
//   planar    the forward and the weight gradient of a layer with few input channels on shifted copies of its
//             planes, NCHW in and out (conv_planar.inc; forward_planar, backward_weight_planar); float32
struct Algo {
  enum Kind : uint8_t { gemm, winograd, implicit, packed, direct, winograd4x4, planar } kind = gemm;
  int64_t columns = 512;
  bool operator==(const Algo&) const = default;
  // the Winograd output tile (2 or 4), 0 for the other algorithms
  int winograd_tile() const { return kind == winograd ? 2 : kind == winograd4x4 ? 4 : 0; }
};

// Winograd F(2x2, 3x3) can run the layer (winograd.h): 3x3, stride 1, no dilation, one group, the
// same padding (at most 2, so the input gradient is such a convolution too) on both sides, float32
// products (bfloat16 GEMMs run several times faster than float32 ones, and Winograd's transforms
// would round differently from the plain product autocast promises), and DL_CONV_WINOGRAD not 0.
bool winograd_applies(const Conv2dParams& g) {
  return g.gemm_dtype == DType::Float32 && conv_tuning().winograd_min_channels > 0 && g.kh == 3 && g.kw == 3 &&
         g.stride[0] == 1 && g.stride[1] == 1 && g.dilation[0] == 1 && g.dilation[1] == 1 && g.groups == 1 &&
         g.padding[0] == g.padding[1] && g.padding[0] <= 2 && g.Ho > 0 && g.Wo > 0;
}

// The fixed rule (DL_CONV_ALGO=heuristic): Winograd inside ConvTuning's window.
bool use_winograd(const Conv2dParams& g) {
  const ConvTuning& t = conv_tuning();
  return winograd_applies(g) && std::min(g.C, g.O) >= t.winograd_min_channels &&
         std::max(g.C, g.O) <= t.winograd_max_channels && g.Ho * g.Wo >= t.winograd_min_plane;
}

// Images per GEMM for a thread that has `avail` images, balanced so the chunks come out even.
inline int64_t chunk_images_bytes(const Conv2dParams& g, int64_t avail, int64_t columns, size_t operand_bytes) {
  const ConvTuning& t = conv_tuning();
  const int64_t L = std::max<int64_t>(g.L(), 1);
  int64_t b = std::clamp<int64_t>((columns + L - 1) / L, 1, std::max<int64_t>(avail, 1));
  const int64_t per_image = std::max(g.K(), g.Og()) * L * static_cast<int64_t>(operand_bytes);
  b = std::max<int64_t>(1, std::min(b, t.max_col_bytes / std::max<int64_t>(per_image, 1)));
  const int64_t chunks = (avail + b - 1) / b;
  return chunks > 0 ? (avail + chunks - 1) / chunks : 1;
}
template <typename T>
int64_t chunk_images(const Conv2dParams& g, int64_t avail, int64_t columns) {
  return chunk_images_bytes(g, avail, columns, sizeof(T));
}

// One row of col for a stride-1 conv whose output is as wide as its input ("same" padding, the
// common 3x3 case): over the valid output rows it is the input plane shifted by one offset, so
// it is one block copy, after which the columns that wrapped into a neighbouring row are zeroed.
template <typename T>
void im2col_row_shifted(const T* xc, T* row, const Conv2dParams& g, int64_t ki, int64_t iw0, int64_t lo, int64_t hi) {
  const int64_t W = g.W, L = g.L();
  // output rows whose tap row ih = oh - ph + ki * dh lies inside the image
  const int64_t oh_lo = std::clamp<int64_t>(g.padding[0] - ki * g.dilation[0], 0, g.Ho);
  const int64_t oh_hi = std::clamp<int64_t>(g.H + g.padding[0] - ki * g.dilation[0], oh_lo, g.Ho);
  std::fill(row, row + oh_lo * W, T(0));
  std::fill(row + oh_hi * W, row + L, T(0));
  if (oh_hi == oh_lo) return;
  // col[l] = x[l + delta] for l in [oh_lo * W, oh_hi * W), clipped to the plane
  const int64_t delta = (ki * g.dilation[0] - g.padding[0]) * W + iw0;
  const int64_t l0 = std::clamp(-delta, oh_lo * W, oh_hi * W);
  const int64_t l1 = std::clamp(g.HW() - delta, l0, oh_hi * W);
  std::fill(row + oh_lo * W, row + l0, T(0));
  if (l1 > l0) std::memcpy(row + l0, xc + (l0 + delta), static_cast<size_t>(l1 - l0) * sizeof(T));
  std::fill(row + l1, row + oh_hi * W, T(0));
  if (lo == 0 && hi == W) return;
  for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
    T* r = row + oh * W;
    for (int64_t ow = 0; ow < lo; ++ow) r[ow] = T(0);
    for (int64_t ow = hi; ow < W; ++ow) r[ow] = T(0);
  }
}

// dst[i] = src[2 * i] for 2-byte values (a stride-2 im2col row of bfloat16 bits): read as 4-byte
// words and keep each word's first half, a loop the compiler turns into vector loads and narrowing
// moves where the element-by-element form stays scalar.
inline void every_other(const uint16_t* src, uint16_t* dst, int64_t n) {
  static_assert(std::endian::native == std::endian::little, "every_other keeps the first value of a word");
  if (n <= 0) return;
  const int64_t pairs = n - 1;  // the last value is read alone: its pair may lie past the row
#pragma omp simd
  for (int64_t i = 0; i < pairs; ++i) {
    uint32_t w;
    std::memcpy(&w, src + 2 * i, sizeof w);
    dst[i] = static_cast<uint16_t>(w);  // little-endian: the first of the two values
  }
  dst[pairs] = src[2 * pairs];
}

// im2col on AVX-512, two ways, both driven by per-tap tables that depend only on the layer's geometry (computed
// once per thread and geometry, not per image; they live in a thread-local cache, so a reference to them is
// valid until the next im2col_tables call on the same thread):
// - shifted: layers whose output is as wide as the input's phase planes, Wo == ceil(W / sw) (stride 1 with "same"
//   padding; ResNet's stride-2 layers and stem), any plane size. With stride 1, row (c, ki, kj) of col is plane
//   c read at offset delta = (ki dh - ph) W + (kj dw - pw), with zeros where the tap falls outside the image;
//   which of a block of V lanes are inside depends only on the tap, so each row is one masked load and one store
//   per V values (V = 16 floats or 32 bfloat16 values). A strided layer first splits each input plane into
//   sh x sw phase planes, P(a, b)[i][j] = x[sh i + a][sw j + b], ceil(H / sh) x ceil(W / sw) each: tap (ki, kj)
//   then reads phase plane ((ki dh - ph) mod sh, (kj dw - pw) mod sw) at a constant offset, as with stride 1.
//   Masked-off lanes are not read, so the offsets may point before or past the plane.
// - gathered: other narrow output planes (Wo < 8, or Wo < 16 when strided; 16 outputs or more), where the row
//   loops below pay their per-row work for a few values. Each tap has the input offset of every output position
//   (-1 outside the image), and each row is 16-lane masked gathers. A bfloat16 value is gathered as the 4-byte
//   word that starts at it, so the planes must be readable 2 bytes past their last value (rounded_bf16 leaves
//   that room, and im2col's 2-byte inputs are always its buffers).
// Measured on a Zen 4 against the row loops below: bf16 ResNet18 at 64x64, batch 128, 3x3 stride-1 layers
// 141-190 -> 250-261 GFLOP/s and the stem 15 -> 10-11 ms (phase planes); gathered, unpadded 3x3 layers on 5x5 to
// 9x9 planes (batch 64) 1.0-1.2x faster in float32 and 1.0-1.6x in bf16.
#if defined(__x86_64__)
enum class VectorIm2col { none, shifted, gathered };

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// adjoint: for col2im, which has only the stride-1 shifted form (a gather-add-scatter form for narrow planes
// measured 5-40% slower than the scalar loops on a Zen 4's input gradients of stride-2 layers, and was removed).
VectorIm2col vector_im2col_kind(const Conv2dParams& g, size_t value_bytes, bool adjoint = false) {
  if (!conv_tuning().vector_im2col || g.L() == 0) return VectorIm2col::none;
  // the functions are compiled for AVX-512F + BW (every AVX-512 CPU since Skylake-X has both)
  if ((value_bytes != 4 && value_bytes != 2) || !cpu_has_avx512bw()) return VectorIm2col::none;
  const bool unit = g.stride[0] == 1 && g.stride[1] == 1;
  if ((unit || (!adjoint && g.stride[0] <= 4 && g.stride[1] <= 4)) && g.Wo == ceil_div(g.W, g.stride[1]))
    return VectorIm2col::shifted;
  if (adjoint) return VectorIm2col::none;
  // at least a vector's worth of outputs: with 4 (2x2), a gather of 4 lanes ran slower than the loops
  if ((g.Wo < 8 || (g.stride[1] != 1 && g.Wo < 16)) && g.L() >= 16 && g.HW() < (int64_t{1} << 30))
    return VectorIm2col::gathered;
  return VectorIm2col::none;
}

struct Im2colTables {
  std::array<int64_t, 12> key{};
  std::vector<uint32_t> masks;  // shifted: taps x blocks of V lanes, bit l: lane l inside the image
  std::vector<uint32_t> input_masks;  // shifted, V = 16: taps x blocks of 16 input positions, bit p: an output
                                      // position takes this tap from input position p (col2im)
  std::vector<int64_t> delta;   // shifted: per tap, the offset of output position 0 in the (phase) planes
  std::vector<int32_t> offset;  // gathered: taps x L input offsets, -1 outside the image
  std::vector<uint8_t> phase_used;  // shifted, strided: sh x sw, whether a tap reads phase plane (a, b)
};

const Im2colTables& im2col_tables(const Conv2dParams& g, VectorIm2col kind, int64_t V) {
  thread_local Im2colTables t;
  const std::array<int64_t, 12> key{static_cast<int64_t>(kind), V, g.H, g.W, g.kh, g.kw, g.stride[0], g.stride[1],
                                    g.padding[0], g.padding[1], g.dilation[0], g.dilation[1]};
  if (t.key == key) return t;
  t.key = {};  // set again once the tables are built (an allocation that throws leaves no stale match)
  const int64_t L = g.L(), taps = g.kh * g.kw, blocks = (L + V - 1) / V;
  t.masks.assign(kind == VectorIm2col::shifted ? static_cast<size_t>(taps * blocks) : 0, 0);
  t.delta.assign(kind == VectorIm2col::shifted ? static_cast<size_t>(taps) : 0, 0);
  const int64_t in_blocks = (g.HW() + 15) / 16;
  const bool unit = g.stride[0] == 1 && g.stride[1] == 1;
  t.input_masks.assign(kind == VectorIm2col::shifted && V == 16 && unit ? static_cast<size_t>(taps * in_blocks) : 0, 0);
  const int64_t Hq = ceil_div(g.H, g.stride[0]), Wq = ceil_div(g.W, g.stride[1]);
  t.phase_used.assign(static_cast<size_t>(g.stride[0] * g.stride[1]), 0);
  t.offset.assign(kind == VectorIm2col::gathered ? static_cast<size_t>(taps * L) : 0, -1);
  for (int64_t ki = 0; ki < g.kh; ++ki)
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      const int64_t tap = ki * g.kw + kj, dh = ki * g.dilation[0] - g.padding[0], dw = kj * g.dilation[1] - g.padding[1];
      if (kind == VectorIm2col::shifted) {
        const int64_t a = dh - floor_div(dh, g.stride[0]) * g.stride[0], b = dw - floor_div(dw, g.stride[1]) * g.stride[1];
        t.delta[static_cast<size_t>(tap)] =
            (a * g.stride[1] + b) * Hq * Wq + floor_div(dh, g.stride[0]) * Wq + floor_div(dw, g.stride[1]);
        t.phase_used[static_cast<size_t>(a * g.stride[1] + b)] = 1;
      }
      for (int64_t l = 0; l < L; ++l) {
        const int64_t ih = l / g.Wo * g.stride[0] + dh, iw = l % g.Wo * g.stride[1] + dw;
        if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
        if (kind == VectorIm2col::shifted)
          t.masks[static_cast<size_t>(tap * blocks + l / V)] |= 1u << (l % V);
        else
          t.offset[static_cast<size_t>(tap * L + l)] = static_cast<int32_t>(ih * g.W + iw);
        if (!t.input_masks.empty()) {
          const int64_t p = ih * g.W + iw;
          t.input_masks[static_cast<size_t>(tap * in_blocks + p / 16)] |= 1u << (p % 16);
        }
      }
    }
  t.key = key;
  return t;
}

// The planes the shifted rows read: x itself (stride 1), or its phase planes (in a thread-local buffer, valid
// until the next call on this thread); *plane: the values of one channel's (phase) planes.
template <typename T>
const T* shifted_source(const T* x, const Conv2dParams& g, const Im2colTables& tab, int64_t* plane) {
  const int64_t sh = g.stride[0], sw = g.stride[1];
  *plane = g.HW();
  if (sh == 1 && sw == 1) return x;
  const int64_t Hq = ceil_div(g.H, sh), Wq = ceil_div(g.W, sw);
  *plane = sh * sw * Hq * Wq;
  thread_local std::vector<T> phases;
  phases.resize(static_cast<size_t>(g.Cg() * *plane));
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t a = 0; a < sh; ++a)
      for (int64_t b = 0; b < sw; ++b) {
        if (!tab.phase_used[static_cast<size_t>(a * sw + b)]) continue;  // never read (a 1x1 layer reads one)
        T* P = phases.data() + c * *plane + (a * sw + b) * Hq * Wq;
        for (int64_t i = 0; i < Hq; ++i) {
          const int64_t ih = sh * i + a;
          T* pr = P + i * Wq;
          if (ih >= g.H) {
            std::fill(pr, pr + Wq, T(0));
            continue;
          }
          const T* xr = x + c * g.HW() + ih * g.W + b;
          const int64_t n = ceil_div(g.W - b, sw);  // columns b, b + sw, ... inside the row
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) pr[j] = xr[j * sw];
          std::fill(pr + n, pr + Wq, T(0));
        }
      }
  return phases.data();
}

// Columns [l0, l1) of every row of col (l0 a multiple of V), written from col's column 0, reading src's planes.
template <typename T>
__attribute__((target("avx512f,avx512bw"))) void im2col_shifted_columns(const T* src, int64_t plane, T* col,
                                                                         int64_t ld, const Conv2dParams& g,
                                                                         const Im2colTables& tab, int64_t l0,
                                                                         int64_t l1) {
  constexpr int64_t V = 64 / sizeof(T);
  const int64_t taps = g.kh * g.kw, blocks = (g.L() + V - 1) / V, b0 = l0 / V, b1 = (l1 + V - 1) / V;
  const uint32_t tail = (l1 - l0) % V == 0 ? ~0u : (1u << ((l1 - l0) % V)) - 1;
  for (int64_t c = 0; c < g.Cg(); ++c) {
    // addresses as integers: an offset may point outside the plane (only masked-off lanes go there)
    const uintptr_t xc = reinterpret_cast<uintptr_t>(src + c * plane);
    for (int64_t t = 0; t < taps; ++t) {
      T* row = col + (c * taps + t) * ld;
      const uint32_t* m = tab.masks.data() + t * blocks;
      const uintptr_t base = xc + static_cast<uintptr_t>(tab.delta[static_cast<size_t>(t)] * static_cast<int64_t>(sizeof(T)));
      for (int64_t b = b0; b < b1; ++b) {
        const void* p = reinterpret_cast<const void*>(base + static_cast<uintptr_t>(b * 64));
        const uint32_t store = b + 1 < b1 ? ~0u : tail;
        T* dst = row + (b - b0) * V;
        // a block with no tap inside stores zeros without a load (its address may lie on an unmapped page)
        if constexpr (sizeof(T) == 4) {
          const __m512 v = m[b] ? _mm512_maskz_loadu_ps(static_cast<__mmask16>(m[b]), p) : _mm512_setzero_ps();
          _mm512_mask_storeu_ps(dst, static_cast<__mmask16>(store), v);
        } else {
          const __m512i v = m[b] ? _mm512_maskz_loadu_epi16(m[b], p) : _mm512_setzero_si512();
          _mm512_mask_storeu_epi16(dst, store, v);
        }
      }
    }
  }
}

template <typename T>
void im2col_shifted_avx512(const T* x, T* col, int64_t ld, const Conv2dParams& g) {
  const Im2colTables& tab = im2col_tables(g, VectorIm2col::shifted, 64 / sizeof(T));
  int64_t plane = 0;
  const T* src = shifted_source(x, g, tab, &plane);
  im2col_shifted_columns(src, plane, col, ld, g, tab, 0, g.L());
}

template <typename T>
__attribute__((target("avx512f,avx512bw"))) void im2col_gathered_avx512(const T* x, T* col, int64_t ld,
                                                                         const Conv2dParams& g) {
  const Im2colTables& tab = im2col_tables(g, VectorIm2col::gathered, 16);
  const int64_t L = g.L(), taps = g.kh * g.kw;
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t c = 0; c < g.Cg(); ++c) {
    const T* xc = x + c * g.HW();
    for (int64_t t = 0; t < taps; ++t) {
      T* row = col + (c * taps + t) * ld;
      const int32_t* off = tab.offset.data() + t * L;
      for (int64_t l = 0; l < L; l += 16) {
        const __mmask16 lanes = L - l >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (L - l)) - 1);
        const __m512i idx = _mm512_maskz_loadu_epi32(lanes, off + l);
        const __mmask16 in = _mm512_mask_cmpge_epi32_mask(lanes, idx, zero);
        if constexpr (sizeof(T) == 4) {
          const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, idx, xc, 4);
          _mm512_mask_storeu_ps(row + l, lanes, v);
        } else {
          const __m512i v = _mm512_mask_i32gather_epi32(zero, in, idx, xc, 2);
          _mm512_mask_cvtepi32_storeu_epi16(row + l, lanes, v);
        }
      }
    }
  }
}

// The adjoint, x += col2im(col), for float32 stride-1 layers on the same tables: each block of 16 input
// positions is loaded once, takes every tap's terms in registers (a masked load of the row at the block's
// position minus the tap's offset, a masked add: lanes no output position reaches keep their value), and is
// stored once; tap by tap with a store per tap, each load waited for the previous tap's overlapping store. Each
// value of x gets its taps' terms added in the same order as in the scalar loops, so the sums are bit for bit
// the same. Measured on a Zen 4 (input gradients through GEMM + col2im, batch 64, 2 threads): bf16 3x3 layers
// at 16x16 to 2x2 1.2-1.4x faster, float32 at 2x2 1.2x, the others level.
__attribute__((target("avx512f,avx512bw"))) void col2im_add_avx512(const float* col, int64_t ld, float* x,
                                                                    const Conv2dParams& g) {
  const int64_t taps = g.kh * g.kw;
  const Im2colTables& tab = im2col_tables(g, VectorIm2col::shifted, 16);
  const int64_t in_blocks = (g.HW() + 15) / 16;
  const uint32_t tail = g.HW() % 16 == 0 ? 0xFFFFu : (1u << (g.HW() % 16)) - 1;
  for (int64_t c = 0; c < g.Cg(); ++c) {
    float* xc = x + c * g.HW();
    const float* rows = col + c * taps * ld;
    for (int64_t b = 0; b < in_blocks; ++b) {
      const __mmask16 lanes = static_cast<__mmask16>(b + 1 < in_blocks ? 0xFFFFu : tail);
      __m512 acc = _mm512_maskz_loadu_ps(lanes, xc + b * 16);
      for (int64_t t = 0; t < taps; ++t) {
        const __mmask16 in = static_cast<__mmask16>(tab.input_masks[static_cast<size_t>(t * in_blocks + b)]);
        if (in == 0) continue;
        // row position of input position p: p - delta (masked-off lanes are not read, so it may lie outside)
        const uintptr_t src = reinterpret_cast<uintptr_t>(rows + t * ld + b * 16) -
                              static_cast<uintptr_t>(tab.delta[static_cast<size_t>(t)] * static_cast<int64_t>(sizeof(float)));
        acc = _mm512_mask_add_ps(acc, in, acc, _mm512_maskz_loadu_ps(in, reinterpret_cast<const void*>(src)));
      }
      _mm512_mask_storeu_ps(xc + b * 16, lanes, acc);
    }
  }
}
#endif

// col (K rows of L values, row stride ld) from one group's input planes x (C/G, H, W); taps outside
// the image read as zero. bfloat16 bits (T = uint16_t): x must be readable one value past the end of the
// batch's planes (the gathered form reads 4-byte words; every caller passes rounded_bf16's buffer).
template <typename T>
void im2col(const T* x, T* col, int64_t ld, const Conv2dParams& g) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, uint16_t>) {
    switch (vector_im2col_kind(g, sizeof(T))) {
      case VectorIm2col::shifted:
        im2col_shifted_avx512(x, col, ld, g);
        return;
      case VectorIm2col::gathered:
        im2col_gathered_avx512(x, col, ld, g);
        return;
      default:
        break;
    }
  }
#endif
  if (g.Wo < 8) {
    // narrow planes (ResNet's 2x2 to 7x7 layers): rows of a few values, where a memcpy and two fills
    // per row cost more than a plain loop with the bounds test inline
    for (int64_t c = 0; c < g.Cg(); ++c) {
      const T* xc = x + c * g.HW();
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          T* r = col + ((c * g.kh + ki) * g.kw + kj) * ld;
          const int64_t iw0 = kj * g.dilation[1] - g.padding[1];
          for (int64_t oh = 0; oh < g.Ho; ++oh, r += g.Wo) {
            const int64_t ih = oh * g.stride[0] - g.padding[0] + ki * g.dilation[0];
            const bool row_in = ih >= 0 && ih < g.H;
            const T* xr = xc + ih * g.W;
            for (int64_t ow = 0; ow < g.Wo; ++ow) {
              const int64_t iw = ow * g.stride[1] + iw0;
              r[ow] = row_in && iw >= 0 && iw < g.W ? xr[iw] : T(0);
            }
          }
        }
      }
    }
    return;
  }
  const bool shifted_rows = g.stride[0] == 1 && g.stride[1] == 1 && g.Wo == g.W;
  for (int64_t c = 0; c < g.Cg(); ++c) {
    const T* xc = x + c * g.HW();
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * ld;
        const int64_t iw0 = kj * g.dilation[1] - g.padding[1];  // input column of output column 0
        // output columns whose tap lands inside the row: 0 <= ow * sw + iw0 < W
        const int64_t lo = std::min(g.Wo, iw0 >= 0 ? 0 : (-iw0 + g.stride[1] - 1) / g.stride[1]);
        const int64_t hi = std::max(lo, std::min(g.Wo, g.W - iw0 > 0 ? (g.W - iw0 + g.stride[1] - 1) / g.stride[1] : 0));
        if (shifted_rows) {
          im2col_row_shifted(xc, row, g, ki, iw0, lo, hi);
          continue;
        }
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          T* r = row + oh * g.Wo;
          const int64_t ih = oh * g.stride[0] - g.padding[0] + ki * g.dilation[0];
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.Wo, T(0));
            continue;
          }
          const T* xr = xc + ih * g.W;
          std::fill(r, r + lo, T(0));
          if (g.stride[1] == 1) {
            if (hi > lo) std::memcpy(r + lo, xr + lo + iw0, static_cast<size_t>(hi - lo) * sizeof(T));
          } else if (g.stride[1] == 2) {
            if constexpr (std::is_same_v<T, uint16_t>)
              every_other(xr + 2 * lo + iw0, r + lo, hi - lo);
            else
              for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[2 * ow + iw0];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.stride[1] + iw0];
          }
          std::fill(r + hi, r + g.Wo, T(0));
        }
      }
    }
  }
}

// x (C/G, H, W) += col2im(col) (row stride ld); the adjoint of im2col.
template <typename T>
void col2im_add(const T* col, int64_t ld, T* x, const Conv2dParams& g) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_im2col_kind(g, sizeof(T), /*adjoint=*/true) == VectorIm2col::shifted) {
      col2im_add_avx512(col, ld, x, g);
      return;
    }
  }
#endif
  if (g.Wo < 8) {  // narrow planes: plain loops (see im2col)
    for (int64_t c = 0; c < g.Cg(); ++c) {
      T* xc = x + c * g.HW();
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const T* r = col + ((c * g.kh + ki) * g.kw + kj) * ld;
          const int64_t iw0 = kj * g.dilation[1] - g.padding[1];
          for (int64_t oh = 0; oh < g.Ho; ++oh, r += g.Wo) {
            const int64_t ih = oh * g.stride[0] - g.padding[0] + ki * g.dilation[0];
            if (ih < 0 || ih >= g.H) continue;
            T* xr = xc + ih * g.W;
            for (int64_t ow = 0; ow < g.Wo; ++ow) {
              const int64_t iw = ow * g.stride[1] + iw0;
              if (iw >= 0 && iw < g.W) xr[iw] += r[ow];
            }
          }
        }
      }
    }
    return;
  }
  for (int64_t c = 0; c < g.Cg(); ++c) {
    T* xc = x + c * g.HW();
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T* row = col + ((c * g.kh + ki) * g.kw + kj) * ld;
        const int64_t iw0 = kj * g.dilation[1] - g.padding[1];
        const int64_t lo = std::min(g.Wo, iw0 >= 0 ? 0 : (-iw0 + g.stride[1] - 1) / g.stride[1]);
        const int64_t hi = std::max(lo, std::min(g.Wo, g.W - iw0 > 0 ? (g.W - iw0 + g.stride[1] - 1) / g.stride[1] : 0));
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * g.stride[0] - g.padding[0] + ki * g.dilation[0];
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + oh * g.Wo;
          T* xr = xc + ih * g.W;
          if (g.stride[1] == 1) {
#pragma omp simd  // col and x never alias
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow + iw0] += r[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.stride[1] + iw0] += r[ow];
          }
        }
      }
    }
  }
}

// dst (rows, B*L): row r of image b (src + b * image_stride + r * L) lands in columns [b*L, (b+1)*L).
template <typename T>
void gather_planes(const T* src, int64_t image_stride, int64_t rows, int64_t L, int64_t B, T* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(dst + (r * B + b) * L, src + b * image_stride + r * L, static_cast<size_t>(L) * sizeof(T));
}

// What the forward does to each value v of output channel o as it is written: v * scale[o] + shift[o], plus the
// residual's value at the same place, then the ReLU when relu (scale, shift and residual each optional). A plain
// bias is shift alone; conv2d_forward_affine (BatchNorm2d::forward_conv) folds an inference batch norm, the
// shortcut of a residual block and its ReLU into it, so they cost no pass of their own over memory.
template <typename T>
struct Epilogue {
  const T* scale = nullptr;
  const T* shift = nullptr;
  const T* residual = nullptr;  // laid out as the output (N, O, Ho, Wo)
  bool relu = false;
  bool bias_only() const { return scale == nullptr && residual == nullptr && !relu; }
  // The same for output channels [o0, ...) of image n, whose planes are L apart and images O * L apart.
  Epilogue at(int64_t n, int64_t o0, int64_t O, int64_t L) const {
    return {scale ? scale + o0 : nullptr, shift ? shift + o0 : nullptr,
            residual ? residual + (n * O + o0) * L : nullptr, relu};
  }
};

// d[0, L) = the epilogue of channel r applied to s[0, L) (d may be s); res is this row's residual or null. The
// ReLU is the framework's (x > 0 ? x : 0: NaN becomes 0, as in every other ReLU kernel).
template <typename T>
inline void epilogue_row(const T* s, T* d, int64_t L, const Epilogue<T>& ep, int64_t r, const T* res) {
  const T a = ep.scale ? ep.scale[r] : T(1), c = ep.shift ? ep.shift[r] : T(0);
  if (ep.relu) {
    if (res) {
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const T v = s[l] * a + c + res[l];
        d[l] = v > T(0) ? v : T(0);
      }
    } else {
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const T v = s[l] * a + c;
        d[l] = v > T(0) ? v : T(0);
      }
    }
  } else if (res) {
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) d[l] = s[l] * a + c + res[l];
  } else {
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) d[l] = s[l] * a + c;
  }
}

// The inverse of gather_planes, applying the epilogue (ep at the chunk's first image) when given.
template <typename T>
void scatter_planes(const T* src, int64_t rows, int64_t L, int64_t B, T* dst, int64_t image_stride,
                    const Epilogue<T>& ep = {}) {
  const bool copy = ep.bias_only() && ep.shift == nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < B; ++b) {
      const T* s = src + (r * B + b) * L;
      T* d = dst + b * image_stride + r * L;
      if (copy)
        std::memcpy(d, s, static_cast<size_t>(L) * sizeof(T));
      else
        epilogue_row(s, d, L, ep, r, ep.residual ? ep.residual + b * image_stride + r * L : nullptr);
    }
  }
}

// Applies the epilogue in place to every plane of out (for the algorithms that write out without it).
template <typename T>
void epilogue_in_place(T* out, const Conv2dParams& g, const Epilogue<T>& ep) {
  const int64_t L = g.L(), planes = g.N * g.O;
  parallel_shares(planes, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      epilogue_row(out + p * L, out + p * L, L, ep, p % g.O, ep.residual ? ep.residual + p * L : nullptr);
  });
}

// Runs body(n_begin, n_end) over the images: one contiguous share per thread when there are enough
// images (the body then runs single-threaded GEMMs), else the whole range on this thread (the GEMMs
// use the threads).
template <typename F>
void for_image_shares(const Conv2dParams& g, F body) {
  parallel_shares(g.N, body);
}

// ---- float32 forward with the im2col matrix packed straight from the images ---------------------------
// The GEMM asks for its op(B) blocks through sgemm_packed_b (gemm.h); each is gathered from the chunk's images
// into the GEMM's panel layout, so the column matrix is never written and read back (the "implicit GEMM" of
// cuDNN and oneDNN). Column j of a chunk (image i, output pixel (oh, ow)) is described once per chunk: the
// offset of its window's first tap, off = i*C*H*W + ih0*W + iw0, and ih0 = oh*sh - ph, iw0 = ow*sw - pw; row k
// (channel c, tap (ki, kj)) then reads x[c*H*W + ki*dh*W + kj*dw + off] where ih0 + ki*dh and iw0 + kj*dw lie
// inside the image, and zero elsewhere: masked loads along output rows, or masked gathers.

// Offsets are 32-bit (the gathers' index width): the chunk's images must span fewer than 2^31 values. A
// panel's tables are copied to the stack when it is the last (kPad entries at most).
constexpr int64_t kPad = 64;
bool packed_applies(const Conv2dParams& g, int64_t images) {
  return !g.pointwise() && g.gemm_dtype == DType::Float32 && images * g.C * g.HW() < (int64_t{1} << 31) &&
         g.H < (int64_t{1} << 30) && g.W < (int64_t{1} << 30) && sgemm_panel_width() <= kPad;
}

// Where the fixed rule packs: stride-1 and stride-2 layers (masked loads along output rows) with at least 32
// rows of im2col, on a CPU with AVX-512. Measured on a Zen 4 against im2col + GEMM: ResNet18's and the scratch
// CNN's 3x3 forwards ran 1.0-1.5x faster (most on the small planes, where the column matrix of a chunk
// outgrows L2), the 7x7 stride-2 stem 1.1x; the scratch CNN's one-channel first layer (9 rows) 1.6x slower,
// as was the portable packer everywhere.
bool packed_fast(const Conv2dParams& g) {
#if defined(__x86_64__)
  return g.stride[0] <= 2 && g.stride[1] <= 2 && g.K() >= 32 && cpu_has_avx512f() && sgemm_panel_width() % 16 == 0;
#else
  (void)g;
  return false;
#endif
}

// The weight gradient packs from a channels-last copy where that pays (channels_last_pays, below): measured on an
// AVX2 Zen 3 (2 threads, batch 64), 1.0-1.45x faster than im2col + GEMM and 1.0-1.5x than the direct convolution
// on ResNet18's and the scratch CNN's 3x3 layers (stride 1 and 2; level on 128x8x8 -> 256 3x3/2; on the 7x7/2 stem
// 0.85-0.95x the direct convolution, which the search may take); there the fixed rule takes it on CPUs whose best
// direct kernels are AVX2 (on AVX-512 ones, not yet measured, the direct convolution's rule stays ahead). Its
// gathering form pays only when many output channels share each packed value: measured on a Zen 4, 1.15-1.25x
// faster than im2col + GEMM for 256 and 512 channels, level at 128, 1.5x slower at 64.
bool channels_last_pays(const Conv2dParams& g);
bool channels_last_fast(const Conv2dParams& g) { return direct_best_isa() == 1 && channels_last_pays(g); }
bool packed_weight_fast(const Conv2dParams& g) {
#if defined(__x86_64__)
  return channels_last_fast(g) || (g.Og() >= 256 && cpu_has_avx512f() && sgemm_panel_width() % 16 == 0);
#else
  (void)g;
  return false;
#endif
}

// Rows [k0, k0 + kc) of one panel of nr columns whose tables start at off / ih / iw (nr entries each).
// AVX-512, 16 lanes at a time (nr a multiple of 16; the AVX-512 GEMM's is 32), the tables held in registers.
// Lanes whose columns are input pixels one or two apart (a stride-1 or stride-2 output row: at most two such
// runs in 16 lanes when rows are 16+ wide, or 8+ at stride 2) load with masked loads, the stride-2 ones two
// vectors whose even elements a permute picks; other lanes gather. The mask is the taps inside the image;
// masked-off lanes and elements read nothing.
#if defined(__x86_64__)
// The values at p[2q] for the lanes q in `lanes` (0 elsewhere).
__attribute__((target("avx512f,bmi2"))) inline __m512 load_even(const float* p, __mmask16 lanes, __m512i even) {
  const uint32_t e = _pdep_u32(lanes, 0x55555555u);  // lane q -> element 2q
  const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(e), p);
  const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(e >> 16), p + 16);
  return _mm512_permutex2var_ps(lo, even, hi);
}

__attribute__((target("avx512f,bmi2"))) void pack_im2col_panel_avx512(const float* x, const int32_t* off,
                                                                      const int32_t* ih, const int32_t* iw,
                                                                      int64_t nr, int64_t k0, int64_t kc,
                                                                      const Conv2dParams& g, float* d) {
  const int64_t taps = g.kh * g.kw, sw = g.stride[1];
  const __m512i vH = _mm512_set1_epi32(static_cast<int32_t>(g.H)), vW = _mm512_set1_epi32(static_cast<int32_t>(g.W));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i even = _mm512_slli_epi32(iota, 1);
  const __m512i step = sw == 2 ? even : iota;
  for (int64_t j = 0; j < nr; j += 16) {
    const __m512i vo = _mm512_loadu_si512(off + j), vh = _mm512_loadu_si512(ih + j), vw = _mm512_loadu_si512(iw + j);
    // the runs: lanes [0, r) continue off[j], lanes [r, 16) continue off[j + r] (when they do)
    const int32_t base1 = off[j];
    const __mmask16 same1 = _mm512_cmpeq_epi32_mask(vo, _mm512_add_epi32(_mm512_set1_epi32(base1), step));
    const int r = same1 == 0xFFFF ? 16 : __builtin_ctz(static_cast<unsigned>(~same1) & 0xFFFFu);
    const __mmask16 run1 = static_cast<__mmask16>(r == 16 ? 0xFFFF : (1u << r) - 1);
    const int32_t base2 = r < 16 ? off[j + r] - static_cast<int32_t>(sw) * r : 0;
    const __mmask16 run2 = static_cast<__mmask16>(
        _mm512_cmpeq_epi32_mask(vo, _mm512_add_epi32(_mm512_set1_epi32(base2), step)) & ~run1);
    const int mode = (sw == 1 || sw == 2) && (run1 | run2) == 0xFFFF ? static_cast<int>(sw) : 0;
    float* dj = d + j;
    int64_t c = k0 / taps, t = k0 % taps;
    for (int64_t k = k0; k < k0 + kc; ++k, dj += nr) {
      const int32_t dh = static_cast<int32_t>(t / g.kw * g.dilation[0]);
      const int32_t dw = static_cast<int32_t>(t % g.kw * g.dilation[1]);
      const __mmask16 m = _mm512_cmplt_epu32_mask(_mm512_add_epi32(vh, _mm512_set1_epi32(dh)), vH) &
                          _mm512_cmplt_epu32_mask(_mm512_add_epi32(vw, _mm512_set1_epi32(dw)), vW);
      const float* src = x + c * g.HW() + dh * g.W + dw;
      __m512 v;
      if (mode == 1) {
        v = _mm512_maskz_loadu_ps(m & run1, src + base1);
        if (run2) v = _mm512_mask_loadu_ps(v, m & run2, src + base2);
      } else if (mode == 2) {
        v = load_even(src + base1, m & run1, even);
        if (run2) v = _mm512_mask_mov_ps(v, run2, load_even(src + base2, m & run2, even));
      } else {
        v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vo, src, 4);
      }
      _mm512_storeu_ps(dj, v);
      if (++t == taps) t = 0, ++c;
    }
  }
}

// The values at p[2q] for the lanes q set in `lanes` (0 elsewhere): lanes 0-3 from the first 8 elements, 4-7
// from the next 8.
__attribute__((target("avx2,fma"))) inline __m256 load_even_avx2(const float* p, __m256i lanes) {
  const __m256i even = _mm256_setr_epi32(-1, 0, -1, 0, -1, 0, -1, 0);
  const __m256i lo_lanes = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), hi_lanes = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
  const __m256 lo = _mm256_maskload_ps(p, _mm256_and_si256(_mm256_permutevar8x32_epi32(lanes, lo_lanes), even));
  const __m256 hi = _mm256_maskload_ps(p + 8, _mm256_and_si256(_mm256_permutevar8x32_epi32(lanes, hi_lanes), even));
  return detail::even8(lo, hi);
}

// The same on AVX2, 8 lanes at a time (nr a multiple of 8; the AVX2 GEMM's is 16): masked loads along runs of
// output pixels one apart, or for runs two apart (stride 2) two masked loads whose even elements a shuffle and a
// permute pick; other lanes gather. On an AVX2 Zen 4 guest (2 threads) it took the implicit GEMM forward of
// ResNet18's 64x16x16 -> 128 3x3/2 layer from 102-110 GFLOP/s (the scalar loops below) to 120-133 and its
// 128x8x8 -> 256 from 129-136 to 145-150; the direct convolution stays ahead on those and on the stem (76-100
// against 106-135), the search takes the packed forward for the 1x1/2 layers.
__attribute__((target("avx2,fma"))) void pack_im2col_panel_avx2(const float* x, const int32_t* off,
                                                                const int32_t* ih, const int32_t* iw, int64_t nr,
                                                                int64_t k0, int64_t kc, const Conv2dParams& g,
                                                                float* d) {
  const int64_t taps = g.kh * g.kw, sw = g.stride[1];
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i step = sw == 2 ? _mm256_slli_epi32(iota, 1) : iota;
  // in [0, n) as one signed compare: (v ^ INT_MIN) < (n ^ INT_MIN) unsigned
  const __m256i flip = _mm256_set1_epi32(INT32_MIN);
  const __m256i vH = _mm256_xor_si256(_mm256_set1_epi32(static_cast<int32_t>(g.H)), flip);
  const __m256i vW = _mm256_xor_si256(_mm256_set1_epi32(static_cast<int32_t>(g.W)), flip);
  for (int64_t j = 0; j < nr; j += 8) {
    const __m256i vo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(off + j));
    const __m256i vh = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ih + j)), flip);
    const __m256i vw = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(iw + j)), flip);
    // the runs: lanes [0, r) continue off[j], lanes [r, 8) continue off[j + r] (when they do)
    const int32_t base1 = off[j];
    const int same1 = _mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(vo, _mm256_add_epi32(_mm256_set1_epi32(base1), step))));
    const int r = same1 == 0xFF ? 8 : __builtin_ctz(static_cast<unsigned>(~same1) & 0xFFu);
    const __m256i run1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(r), iota);
    const int32_t base2 = r < 8 ? off[j + r] - static_cast<int32_t>(sw) * r : 0;
    const __m256i run2 = _mm256_andnot_si256(
        run1, _mm256_cmpeq_epi32(vo, _mm256_add_epi32(_mm256_set1_epi32(base2), step)));
    const bool two_runs = _mm256_movemask_ps(_mm256_castsi256_ps(run2)) != 0;
    const bool covered = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(run1, run2))) == 0xFF;
    const int mode = (sw == 1 || sw == 2) && covered ? static_cast<int>(sw) : 0;
    float* dj = d + j;
    int64_t c = k0 / taps, t = k0 % taps;
    for (int64_t k = k0; k < k0 + kc; ++k, dj += nr) {
      const int32_t dh = static_cast<int32_t>(t / g.kw * g.dilation[0]);
      const int32_t dw = static_cast<int32_t>(t % g.kw * g.dilation[1]);
      const __m256i m = _mm256_and_si256(_mm256_cmpgt_epi32(vH, _mm256_add_epi32(vh, _mm256_set1_epi32(dh))),
                                         _mm256_cmpgt_epi32(vW, _mm256_add_epi32(vw, _mm256_set1_epi32(dw))));
      const float* src = x + c * g.HW() + dh * g.W + dw;
      __m256 v;
      if (mode == 1) {
        v = _mm256_maskload_ps(src + base1, _mm256_and_si256(m, run1));
        if (two_runs)
          v = _mm256_blendv_ps(v, _mm256_maskload_ps(src + base2, _mm256_and_si256(m, run2)), _mm256_castsi256_ps(run2));
      } else if (mode == 2) {
        v = load_even_avx2(src + base1, _mm256_and_si256(m, run1));
        if (two_runs) v = _mm256_blendv_ps(v, load_even_avx2(src + base2, _mm256_and_si256(m, run2)), _mm256_castsi256_ps(run2));
      } else {
        v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, vo, _mm256_castsi256_ps(m), 4);
      }
      _mm256_storeu_ps(dj, v);
      if (++t == taps) t = 0, ++c;
    }
  }
}
#endif

void pack_im2col_panel(const float* x, const int32_t* off, const int32_t* ih, const int32_t* iw, int64_t nr,
                       int64_t k0, int64_t kc, const Conv2dParams& g, float* d) {
  const int64_t taps = g.kh * g.kw;
  const uint32_t H = static_cast<uint32_t>(g.H), W = static_cast<uint32_t>(g.W);
  for (int64_t k = k0; k < k0 + kc; ++k, d += nr) {
    const int64_t c = k / taps, t = k % taps;
    const int32_t dh = static_cast<int32_t>(t / g.kw * g.dilation[0]), dw = static_cast<int32_t>(t % g.kw * g.dilation[1]);
    const float* src = x + c * g.HW() + dh * g.W + dw;
#pragma omp simd
    for (int64_t j = 0; j < nr; ++j) {
      const bool in = static_cast<uint32_t>(ih[j] + dh) < H && static_cast<uint32_t>(iw[j] + dw) < W;
      d[j] = in ? src[off[j]] : 0.0f;
    }
  }
}

// The per-column tables of a chunk of B images (a shorter last chunk uses their prefix), in the calling
// thread's kTables slot.
constexpr int32_t kNowhere = -(1 << 30);  // a row or column offset that lies outside every image
struct ColumnTables {
  const int32_t *off, *ih, *iw;
};
ColumnTables column_tables(const Conv2dParams& g, int64_t B) {
  const int64_t L = g.L(), cols = B * L, n_tab = cols + kPad;
  int32_t* off = thread_scratch<int32_t>(kTables, static_cast<size_t>(3 * n_tab));
  int32_t* ih = off + n_tab;
  int32_t* iw = ih + n_tab;
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t i = j / L, l = j % L, h0 = l / g.Wo * g.stride[0] - g.padding[0],
                  w0 = l % g.Wo * g.stride[1] - g.padding[1];
    off[j] = static_cast<int32_t>(i * g.C * g.HW() + h0 * g.W + w0);
    ih[j] = static_cast<int32_t>(h0);
    iw[j] = static_cast<int32_t>(w0);
  }
  for (int64_t j = cols; j < n_tab; ++j) off[j] = 0, ih[j] = kNowhere, iw[j] = 0;
  return {off, ih, iw};
}

// Copies the nr entries at a, b, c to t, those from `valid` on replaced by entries that read nothing, and points
// a, b, c there.
inline void last_panel(const int32_t*& a, const int32_t*& b, const int32_t*& c, int64_t nr, int64_t valid,
                       int32_t (&t)[3][kPad]) {
  for (int64_t q = 0; q < nr; ++q) {
    const bool in = q < valid;
    t[0][q] = in ? a[q] : 0, t[1][q] = in ? b[q] : kNowhere, t[2][q] = in ? c[q] : 0;
  }
  a = t[0], b = t[1], c = t[2];
}

// The chunk loop of every im2col-style forward: each thread's share of the images in chunks of B images (B from
// `columns`); make_product(B), called once per share, returns product(xg, wg, b, C, ldc, beta), which writes
// C = W_g (O/g x K) @ col(b images from xg) (+ beta C) with C's rows ldc apart. The output planes of one image
// are C itself (a plain bias filled first; any other epilogue applied in place after), those of several are
// gathered in a buffer and scattered with the epilogue.
template <typename T, typename S, typename MakeProduct>
void forward_chunks(T* out, const S* x, const S* w, const Epilogue<T>& ep, const Conv2dParams& g, int64_t columns,
                    MakeProduct make_product) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  for_image_shares(g, [&](int64_t n0, int64_t n1) {
    const int64_t B = chunk_images<S>(g, n1 - n0, columns);
    auto product = make_product(B);
    for (int64_t n = n0; n < n1; n += B) {
      const int64_t b = std::min(B, n1 - n), bl = b * L;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const S* xg = x + (n * g.C + grp * g.Cg()) * g.HW();
        const S* wg = w + grp * Og * K;
        const Epilogue<T> eg = ep.at(n, grp * Og, g.O, L);
        T* og = out + (n * g.O + grp * Og) * L;
        if (b == 1) {
          if (eg.bias_only()) {
            if (eg.shift)
              for (int64_t o = 0; o < Og; ++o) std::fill(og + o * L, og + (o + 1) * L, eg.shift[o]);
            product(xg, wg, int64_t{1}, og, L, eg.shift ? T(1) : T(0));
          } else {
            product(xg, wg, int64_t{1}, og, L, T(0));
            for (int64_t o = 0; o < Og; ++o)
              epilogue_row(og + o * L, og + o * L, L, eg, o, eg.residual ? eg.residual + o * L : nullptr);
          }
          continue;
        }
        T* tmp = thread_scratch<T>(kGathered, static_cast<size_t>(Og * bl));
        product(xg, wg, b, tmp, bl, T(0));
        scatter_planes(tmp, Og, L, b, og, g.O * L, eg);
      }
    }
  });
}

void forward_packed(float* out, const float* x, const float* w, const Epilogue<float>& ep, const Conv2dParams& g,
                    int64_t columns) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  forward_chunks(out, x, w, ep, g, columns, [&](int64_t B) {
    const ColumnTables tab = column_tables(g, B);
    // the AVX2 packer where the CPU has AVX2 and ConvTuning::vector_im2col (else the scalar loops)
    const bool vector_pack = conv_tuning().vector_im2col && cpu_has_avx2();
    return [&g, K, L, Og, tab, vector_pack](const float* xg, const float* wg, int64_t b, float* c, int64_t ldc,
                                            float beta) {
      const int64_t bl = b * L;
      const SgemmPackB pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, int64_t ps,
                                  float* dst) {
        int32_t t[3][kPad];
        for (int64_t p = 0; p * nr < nc; ++p) {
          const int64_t j = j0 + p * nr, valid = std::min({nr, nc - p * nr, bl - j});
          const int32_t *po = tab.off + j, *ph = tab.ih + j, *pw = tab.iw + j;
          if (valid < nr) last_panel(po, ph, pw, nr, valid, t);  // the columns past nc (or the chunk) read nothing
#if defined(__x86_64__)
          if (nr % 16 == 0 && cpu_has_avx512f()) {
            pack_im2col_panel_avx512(xg, po, ph, pw, nr, k0, kc, g, dst + p * nr * ps);
            continue;
          }
          if (nr % 8 == 0 && vector_pack) {
            pack_im2col_panel_avx2(xg, po, ph, pw, nr, k0, kc, g, dst + p * nr * ps);
            continue;
          }
#endif
          pack_im2col_panel(xg, po, ph, pw, nr, k0, kc, g, dst + p * nr * ps);
        }
      };
      sgemm_packed_b(false, Og, bl, K, 1.0f, wg, K, pack, beta, c, ldc);
    };
  });
}

// A weight gradient whose rows hold the taps as (t, c) (t = ki * kw + kj, c < channels) where gW wants (c, t).
struct TapOrder {
  int64_t taps = 1, channels = 1;
  bool identity() const { return taps == 1 || channels == 1; }
  int64_t row() const { return taps * channels; }
};

// gw rows [r0, r1) = the sum of the n partial gradients, put from `order` into gW's (partial[0] may be gw itself
// when the order is gW's).
template <typename T>
void add_partials(T* gw, T* const* partial, int n, int64_t r0, int64_t r1, const TapOrder& order) {
  const int64_t row = order.row();
  if (order.identity()) {
    for (int64_t i = r0 * row; i < r1 * row; ++i) {
      T s = partial[0][i];
      for (int u = 1; u < n; ++u) s += partial[u][i];
      gw[i] = s;
    }
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    T* d = gw + r * row;
    for (int64_t t = 0; t < order.taps; ++t)
      for (int64_t c = 0; c < order.channels; ++c) {
        const int64_t i = r * row + t * order.channels + c;
        T s = partial[0][i];
        for (int u = 1; u < n; ++u) s += partial[u][i];
        d[c * order.taps + t] = s;
      }
  }
}

// Whether a weight gradient of `bytes` whose GEMMs gather their own operands walks the images once (below).
bool weight_grad_shared(const Conv2dParams& g, int64_t bytes) {
  const ConvTuning& t = conv_tuning();
  return g.N * g.L() < t.weight_grad_shared_columns * max_threads() && bytes >= t.weight_grad_shared_bytes;
}

// gw = the sum over all images of accumulate(n0, n1, acc), which writes (not adds) the gradient of images
// [n0, n1) into acc: one share of the images per thread, each into its own partial sum (thread 0: gw itself,
// unless acc's rows are in another order: then each in scratch, and the sum puts them in gW's), added up at the
// end; or all images on this thread, its GEMMs using the threads, when there are fewer images than threads, or
// (shareable: the GEMMs gather their own operands, so nothing runs on one thread alone) when the partial sums
// would be large and each thread's share of the images short (weight_grad_shared, conv.h).
template <typename T, typename F>
void sum_over_image_shares(const Conv2dParams& g, T* gw, int64_t wsize, F accumulate, bool shareable = false,
                           const TapOrder& order = {}) {
  const int nt = max_threads();
  const bool share = shareable && weight_grad_shared(g, wsize * static_cast<int64_t>(sizeof(T)));
  const bool in_place = order.identity();
  const int64_t rows = wsize / order.row();
  if (!(nt > 1 && g.N >= nt) || share) {
    if (in_place) {
      accumulate(0, g.N, gw);
      return;
    }
    T* acc = thread_scratch<T>(kAcc, static_cast<size_t>(wsize));
    accumulate(0, g.N, acc);
    parallel_shares(rows, [&](int64_t r0, int64_t r1) { add_partials(gw, &acc, 1, r0, r1, order); });
    return;
  }
  // each thread sums its images into its own partial gradient (thread 0: gw itself when in place), then each adds
  // up a share of the rows
  std::vector<T*> partial(static_cast<size_t>(nt), nullptr);
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  {
    const int t = thread_id(), n = num_threads();
    try {
      T* acc = t == 0 && in_place ? gw : thread_scratch<T>(kAcc, static_cast<size_t>(wsize));
      partial[static_cast<size_t>(t)] = acc;
      accumulate(g.N * t / n, g.N * (t + 1) / n, acc);
    } catch (...) {
#pragma omp critical(dl_conv_error)
      if (!error) error = std::current_exception();
    }
#pragma omp barrier
    if (!error) add_partials(gw, partial.data(), n, rows * t / n, rows * (t + 1) / n, order);
  }
  if (error) std::rethrow_exception(error);
}

// ---- weight gradient: implicit GEMM, its columns gathered from the images or copied from a channels-last copy --
// gW (O/g, K) += gout (O/g, B*L) @ col^T: op(B) = col^T has the chunk's pixels as rows and the K taps as columns;
// a panel holds, for each pixel, nr consecutive taps. Two ways to pack it:
//   gathered       the taps in gW's order (c, ki, kj), each value gathered from the NCHW images (tap tables as
//                  forward_packed's column tables: offset c*H*W + ki*dh*W + kj*dw and (ki*dh, kj*dw); one masked
//                  gather per 16 taps on AVX-512, else a loop).
//   channels-last  the chunk's images first copied once to a zero-padded channels-last buffer (b, Hp, Wp, C), the
//                  GEMM's columns taking the taps in the order (ki, kj, c): a pixel's taps of one kernel row are
//                  then kw * C/g consecutive values of the copy (C/g with dilation), so a panel row is one or two
//                  runs, copied rather than gathered. The sums' columns go back to gW's order (TapOrder) as the
//                  threads' partial gradients are added.
// Each value's sum over the pixels is the same GEMM's, in the same order, either way (and as im2col + GEMM's).
// The copy pays where each packed value serves few products (a gathered panel of 16 taps costs about what 16
// output channels' products do; measured on an AVX2 Zen 3, ResNet18's 64x16x16 -> 128 3x3/2 and the scratch CNN's
// 96x7x7 layers 1.15-1.2x, the 7x7/2 stem 1.3x); it costs where the gradient is large next to the pixels (the
// reorder is a pass over the gradient: ResNet18's 512x2x2 layers 0.8x). So the layers whose images are walked
// once (weight_grad_shared: large gradients, few pixels) gather, as does a 1x1 kernel without padding (its taps
// are its channels, read in place: a copy would move every pixel where a strided layer reads a quarter of them).
bool channels_last_pays(const Conv2dParams& g) {
  return (g.kh * g.kw > 1 || g.padding[0] > 0 || g.padding[1] > 0) &&
         !weight_grad_shared(g, g.O * g.K() * static_cast<int64_t>(sizeof(float)));
}

// A zero-padded channels-last buffer of a layer's input plane, (images, Hp, Wp, channels): its geometry and
// offsets (also the strided input gradient's col2im buffer, below).
struct ChannelsLast {
  int64_t Hp, Wp, ch;
  ChannelsLast(const Conv2dParams& g, int64_t channels)
      : Hp(g.H + 2 * g.padding[0]), Wp(g.W + 2 * g.padding[1]), ch(channels) {}
  int64_t image() const { return Hp * Wp * ch; }
  // the offset of tap (ki, kj) of channel c from a pixel's first tap
  int64_t tap(const Conv2dParams& g, int64_t ki, int64_t kj, int64_t c) const {
    return (ki * g.dilation[0] * Wp + kj * g.dilation[1]) * ch + c;
  }
  // the first tap of output pixel l of image i (images counted from the buffer's first)
  int64_t pixel(const Conv2dParams& g, int64_t i, int64_t l) const {
    return ((i * Hp + l / g.Wo * g.stride[0]) * Wp + l % g.Wo * g.stride[1]) * ch;
  }
};

// The b images at x (NCHW) -> xp (b, Hp, Wp, C), zero borders, on the threads unless inside a parallel region: the
// direct convolution's copy (vector transposes where the CPU has them and ConvTuning::vector_im2col, else loops).
void to_channels_last(const float* x, int64_t b, const Conv2dParams& g, const ChannelsLast& cl, float* xp) {
  DirectConvShape s{};
  s.C = g.C, s.H = g.H, s.W = g.W, s.ph = g.padding[0], s.pw = g.padding[1];
  const bool vector = conv_tuning().vector_im2col && direct_kernels() != nullptr;
  parallel_shares(b, [&](int64_t i0, int64_t i1) {
    direct_to_channels_last(x + i0 * g.C * g.HW(), i1 - i0, s, xp + i0 * cl.image(), vector);
  });
}

// The tap tables of one group's K rows, plus kPad entries that read nothing, in the kRowTables slot.
ColumnTables tap_tables(const Conv2dParams& g) {
  const int64_t K = g.K(), taps = g.kh * g.kw, n_tab = K + kPad;
  int32_t* off = thread_scratch<int32_t>(kRowTables, static_cast<size_t>(3 * n_tab));
  int32_t* dh = off + n_tab;
  int32_t* dw = dh + n_tab;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c = k / taps, t = k % taps, h = t / g.kw * g.dilation[0], w = t % g.kw * g.dilation[1];
    off[k] = static_cast<int32_t>(c * g.HW() + h * g.W + w);
    dh[k] = static_cast<int32_t>(h);
    dw[k] = static_cast<int32_t>(w);
  }
  for (int64_t k = K; k < n_tab; ++k) off[k] = 0, dh[k] = kNowhere, dw[k] = 0;
  return {off, dh, dw};
}

// Rows (pixels) [k0, k0 + kc) of one panel of nr taps: d[(k - k0) * nr + q] = x[toff[q] + off[k]] where the tap
// lands inside the image, else 0.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) void pack_im2col_t_panel_avx512(const float* x, const int32_t* toff,
                                                                   const int32_t* tdh, const int32_t* tdw, int64_t nr,
                                                                   const ColumnTables& col, int64_t k0, int64_t kc,
                                                                   const Conv2dParams& g, float* d) {
  const __m512i vH = _mm512_set1_epi32(static_cast<int32_t>(g.H)), vW = _mm512_set1_epi32(static_cast<int32_t>(g.W));
  for (int64_t q = 0; q < nr; q += 16) {
    const __m512i vo = _mm512_loadu_si512(toff + q), vh = _mm512_loadu_si512(tdh + q), vw = _mm512_loadu_si512(tdw + q);
    float* dq = d + q;
    for (int64_t k = k0; k < k0 + kc; ++k, dq += nr) {
      const __mmask16 m = _mm512_cmplt_epu32_mask(_mm512_add_epi32(vh, _mm512_set1_epi32(col.ih[k])), vH) &
                          _mm512_cmplt_epu32_mask(_mm512_add_epi32(vw, _mm512_set1_epi32(col.iw[k])), vW);
      _mm512_storeu_ps(dq, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vo, x + col.off[k], 4));
    }
  }
}
#endif

void pack_im2col_t_panel(const float* x, const int32_t* toff, const int32_t* tdh, const int32_t* tdw, int64_t nr,
                         const ColumnTables& col, int64_t k0, int64_t kc, const Conv2dParams& g, float* d) {
  const uint32_t H = static_cast<uint32_t>(g.H), W = static_cast<uint32_t>(g.W);
  for (int64_t k = k0; k < k0 + kc; ++k, d += nr) {
    const float* src = x + col.off[k];
    for (int64_t q = 0; q < nr; ++q) {
      const bool in = static_cast<uint32_t>(tdh[q] + col.ih[k]) < H && static_cast<uint32_t>(tdw[q] + col.iw[k]) < W;
      d[q] = in ? src[toff[q]] : 0.0f;
    }
  }
}

// The common panel, one run of nr values a row: d[k * nr + q] = src[base[k] + q] for k < kc; false for a width
// other than 8, 16 or 32.
template <int NR>
void copy_rows_of(float* d, const float* src, const int64_t* base, int64_t kc) {
  for (int64_t k = 0; k < kc; ++k, d += NR) std::memcpy(d, src + base[k], NR * sizeof(float));
}
bool copy_rows(float* d, const float* src, const int64_t* base, int64_t kc, int64_t nr) {
  switch (nr) {
    case 8: copy_rows_of<8>(d, src, base, kc); return true;
    case 16: copy_rows_of<16>(d, src, base, kc); return true;
    case 32: copy_rows_of<32>(d, src, base, kc); return true;
    default: return false;
  }
}

#if defined(__x86_64__)
// A panel of 16 columns made of runs (pack_channels_last, below) on AVX2: for each pixel, every run's 16 values
// loaded from where its first lane would be, masked to the run's lanes (masked lanes read nothing and are zero),
// and the runs OR'ed together (their lanes are disjoint; lanes past the last run stay zero). The scalar loops over
// the runs (short ones: the 7x7 stem's kernel rows are runs of 21 values, a panel holds parts of two) took 20% of
// the stem's weight gradient (perf, AVX2 Zen 4 guest).
__attribute__((target("avx2,fma"))) void pack_runs16_avx2(const float* xg, const int64_t* base, int64_t k0, int64_t kc,
                                                          const int64_t* to, const int64_t* at, int64_t runs,
                                                          float* d) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i mask[16][2];  // (a panel of 16 columns has at most 16 runs)
  int64_t from[16];
  for (int64_t r = 0; r < runs; ++r) {
    from[r] = to[at[r]] - at[r];  // where lane 0 would read
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * h));
      mask[r][h] = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(at[r])), q),
                                       _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(at[r + 1])), q));
    }
  }
  for (int64_t k = k0; k < k0 + kc; ++k, d += 16) {
    const float* xk = xg + base[k];
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t r = 0; r < runs; ++r) {
      lo = _mm256_or_ps(lo, _mm256_maskload_ps(xk + from[r], mask[r][0]));
      hi = _mm256_or_ps(hi, _mm256_maskload_ps(xk + from[r] + 8, mask[r][1]));
    }
    _mm256_storeu_ps(d, lo);
    _mm256_storeu_ps(d + 8, hi);
  }
}
#endif

// The panels of the channels-last copy xg (one group's first channel) for the pixels' first taps base[]: rows
// (pixels) [k0, k0 + kc) of the panels of columns [j0, j0 + nc) (tap offsets toff, K of them).
void pack_channels_last(const float* xg, const int64_t* base, const int64_t* toff, int64_t K, int64_t k0, int64_t kc,
                        int64_t j0, int64_t nc, int64_t nr, int64_t ps, float* dst) {
#if defined(__x86_64__)
  const bool runs16 = nr == 16 && conv_tuning().vector_im2col && cpu_has_avx2();
#endif
  for (int64_t p = 0; p * nr < nc; ++p) {
    const int64_t j = j0 + p * nr, valid = std::min({nr, nc - p * nr, K - j});
    const int64_t* to = toff + j;
    int64_t at[kPad + 1], runs = 0;  // the panel's runs of consecutive offsets: [at[r], at[r + 1])
    for (int64_t q = 0; q < valid; ++q)
      if (q == 0 || to[q] != to[q - 1] + 1) at[runs++] = q;
    at[runs] = valid;
    float* d = dst + p * nr * ps;
    if (runs == 1 && valid == nr && copy_rows(d, xg + to[0], base + k0, kc, nr)) continue;
#if defined(__x86_64__)
    if (runs16) {
      pack_runs16_avx2(xg, base, k0, kc, to, at, runs, d);
      continue;
    }
#endif
    for (int64_t k = k0; k < k0 + kc; ++k, d += nr) {
      const float* xk = xg + base[k];
      for (int64_t r = 0; r < runs; ++r) {
        const float* run = xk + to[at[r]] - at[r];
#pragma omp simd  // the copy and the panel never alias
        for (int64_t q = at[r]; q < at[r + 1]; ++q) d[q] = run[q];
      }
      for (int64_t q = valid; q < nr; ++q) d[q] = 0.0f;
    }
  }
}

// ... and of the NCHW images xg (one group's first channel), gathered with the column and tap tables.
void pack_gathered(const float* xg, const ColumnTables& col, const ColumnTables& tap, int64_t K, int64_t k0,
                   int64_t kc, int64_t j0, int64_t nc, int64_t nr, int64_t ps, const Conv2dParams& g, float* dst) {
  int32_t t[3][kPad];
  for (int64_t p = 0; p * nr < nc; ++p) {
    const int64_t j = j0 + p * nr, valid = std::min({nr, nc - p * nr, K - j});
    const int32_t *po = tap.off + j, *ph = tap.ih + j, *pw = tap.iw + j;
    if (valid < nr) last_panel(po, ph, pw, nr, valid, t);
#if defined(__x86_64__)
    if (nr % 16 == 0 && cpu_has_avx512f()) {
      pack_im2col_t_panel_avx512(xg, po, ph, pw, nr, col, k0, kc, g, dst + p * nr * ps);
      continue;
    }
#endif
    pack_im2col_t_panel(xg, po, ph, pw, nr, col, k0, kc, g, dst + p * nr * ps);
  }
}

void backward_weight_packed(float* gw, const float* gout, const float* x, const Conv2dParams& g, int64_t columns) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og(), Cg = g.Cg(), C = g.C;
  const bool copy = channels_last_pays(g);
  const ChannelsLast cl(g, C);
  std::vector<int64_t> toff;  // the copy's tap offsets, columns in the order (ki, kj, c); read by all threads
  if (copy)
    for (int64_t k = 0; k < K; ++k) toff.push_back(cl.tap(g, k / Cg / g.kw, k / Cg % g.kw, k % Cg));
  // acc = the gradient of images [n0, n1) (columns (ki, kj, c) with the copy)
  auto accumulate = [&](int64_t n0, int64_t n1, float* acc) {
    const int64_t B = chunk_images<float>(g, n1 - n0, columns);
    float* xp = nullptr;
    int64_t* base = nullptr;
    ColumnTables col{}, tap{};
    if (copy) {
      xp = thread_scratch<float>(kChannelsLast, static_cast<size_t>(B * cl.image()));
      base = thread_scratch<int64_t>(kTables, static_cast<size_t>(B * L));
      for (int64_t j = 0; j < B * L; ++j) base[j] = cl.pixel(g, j / L, j % L);
    } else {
      col = column_tables(g, B), tap = tap_tables(g);
    }
    bool first = true;
    for (int64_t n = n0; n < n1; n += B) {
      const int64_t b = std::min(B, n1 - n), bl = b * L;
      if (copy) to_channels_last(x + n * C * g.HW(), b, g, cl, xp);
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const float* go = gout + (n * g.O + grp * Og) * L;
        const float* xg = copy ? xp + grp * Cg : x + (n * C + grp * Cg) * g.HW();
        const SgemmPackB pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, int64_t ps,
                                    float* dst) {
          if (copy)
            pack_channels_last(xg, base, toff.data(), K, k0, kc, j0, nc, nr, ps, dst);
          else
            pack_gathered(xg, col, tap, K, k0, kc, j0, nc, nr, ps, g, dst);
        };
        const float* a = go;
        int64_t lda = L;
        if (b > 1) {
          float* gathered = thread_scratch<float>(kGathered, static_cast<size_t>(Og * bl));
          gather_planes(go, g.O * L, Og, L, b, gathered);
          a = gathered, lda = bl;
        }
        sgemm_packed_b(false, Og, K, bl, 1.0f, a, lda, pack, first ? 0.0f : 1.0f, acc + grp * Og * K, K);
      }
      first = false;
    }
    if (first) std::fill(acc, acc + g.O * K, 0.0f);
  };
  sum_over_image_shares(g, gw, g.O * K, accumulate, /*shareable=*/true,
                        copy ? TapOrder{g.kh * g.kw, Cg} : TapOrder{});
}

// The input gradient of a stride-1, single-group convolution is a stride-1 convolution of the output gradient
// with the kernels transposed (C <-> O) and rotated by 180 degrees, padded by d * (k - 1) - p on each side
// (which must not be negative): the geometry of that convolution.
// The fixed rule runs it where it measured faster on a Zen 4 (1.1-1.4x on ResNet18's stride-1 layers): 64+
// input channels (the forward's output rows) and planes 4+ wide; with fewer channels, or the scratch CNN's 3x3
// planes, it ran 0.85-0.9x of im2col + GEMM + col2im, and with one channel 8x slower.
bool input_as_forward_applies(const Conv2dParams& g) {
  return g.stride[0] == 1 && g.stride[1] == 1 && g.groups == 1 && g.padding[0] <= g.dilation[0] * (g.kh - 1) &&
         g.padding[1] <= g.dilation[1] * (g.kw - 1);
}

Conv2dParams input_as_forward_params(const Conv2dParams& g) {
  Conv2dParams f = g;
  f.C = g.O, f.H = g.Ho, f.W = g.Wo, f.O = g.C, f.Ho = g.H, f.Wo = g.W;
  f.padding = {g.dilation[0] * (g.kh - 1) - g.padding[0], g.dilation[1] * (g.kw - 1) - g.padding[1]};
  return f;
}

// The flipped, transposed kernels of a stride-1 layer's input gradient run as a forward (input_as_forward):
// wf (C, O, kh, kw), in the calling thread's kFlipped slot.
const float* flipped_weights(const float* w, const Conv2dParams& g) {
  const int64_t taps = g.kh * g.kw;
  float* wf = thread_scratch<float>(kFlipped, static_cast<size_t>(g.O * g.C * taps));
  // in 16 x 16 blocks of (o, c), so reads and writes both stay within a few kilobytes
  constexpr int64_t kB = 16;
#pragma omp parallel for schedule(static) if (g.O * g.C * taps > (int64_t{1} << 16))
  for (int64_t c0 = 0; c0 < g.C; c0 += kB)
    for (int64_t o0 = 0; o0 < g.O; o0 += kB)
      for (int64_t o = o0; o < std::min(o0 + kB, g.O); ++o)
        for (int64_t c = c0; c < std::min(c0 + kB, g.C); ++c)
          for (int64_t t = 0; t < taps; ++t) wf[(c * g.O + o) * taps + (taps - 1 - t)] = w[(o * g.C + c) * taps + t];
  return wf;
}

// ---- the input gradient of a strided layer through a channels-last col2im ---------------------------------
// Per chunk of b images and group: colT (b*L, K) = gout_g^T @ W'_g, where W' holds each output channel's taps in
// the order (ki, kj, c). A pixel's row of colT then adds, for each kernel row, a run of kw * C/g values (C/g with
// dilation) into a zero-padded channels-last buffer (b, Hp, Wp, C/g): contiguous vector adds, where NCHW's col2im
// adds every stride-th value of a row. The buffer's interior is then transposed into gx. The sums differ from
// col2im's only in their order (each input value's terms are added pixel by pixel).
bool input_channels_last_applies(const Conv2dParams& g) {
  return (g.stride[0] > 1 || g.stride[1] > 1) && g.gemm_dtype == DType::Float32;
}

// Where the fixed rule takes it: measured on an AVX2 Zen 3 (2 threads, in isolation), ResNet18's 3x3 stride-2
// layers with output planes of 8x8 and more ran 1.05-1.2x im2col + GEMM and 1.05-1.3x the direct convolution's
// phases (64x16x16 -> 128 and 64x56x56 -> 128 at 155-160 GFLOP/s); on 4x4 and 2x2 planes 0.7-1.1x from one
// measurement to the next (each image's few pixels carry the call's packing of all the weights), and level inside
// the training step where a trial rule took them (ten paired rounds); 1x1 kernels 0.9x. On the AVX2 Zen 4 guest,
// with its chunks' colT kept in L2, 4x4 planes ran 1.09-1.12x (128x8x8 -> 256, paired in one process, 15 rounds),
// 2x2 planes level, so the rule takes planes of 16 pixels and more; the search decides elsewhere. Not measured on
// AVX-512 CPUs.
bool input_channels_last_fast(const Conv2dParams& g) {
  return direct_best_isa() == 1 && g.kh * g.kw > 1 && g.Ho * g.Wo >= 16;
}

void backward_input_channels_last(float* gx, const float* gout, const float* w, const Conv2dParams& g,
                                  int64_t columns) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og(), Cg = g.Cg(), taps = g.kh * g.kw, HW = g.HW();
  const ChannelsLast cl(g, Cg);
  const int64_t Wp = cl.Wp, image = cl.image();
  // W' (O, taps, C/g): column j of W' is column from[j] of w's row (tap j / C/g of channel j % C/g; -1: the
  // panels' zero padding past K). With at least as many images as threads, packed once per call straight into the
  // GEMM's panels (gemm.h's GemmPackedB layout: panel p of nr columns holds W'[o][p*nr + q] at p*nr*Og + o*nr + q),
  // on the threads, row by row of w (a row stays in L1 while its values go to every panel); with fewer, the same
  // with panels of one column, which is W' transposed, (K, Og), for GEMMs that use the threads and read it as
  // op(B) = B^T. The calling thread's scratch, read by all.
  const bool prepacked = g.N >= max_threads();
  const int64_t nr = prepacked ? sgemm_panel_width() : 1, np = (K + nr - 1) / nr;
  std::vector<int64_t> from(static_cast<size_t>(np * nr), -1);
  for (int64_t j = 0; j < K; ++j) from[static_cast<size_t>(j)] = j % Cg * taps + j / Cg;
  const int64_t size = (np * nr * Og + 15) / 16 * 16;  // a group's panels (or rows), 64-byte aligned
  float* wt = thread_scratch<float>(prepacked ? kPackedWeights : kFlipped, static_cast<size_t>(size * g.groups));
#pragma omp parallel for schedule(static) if (g.O * K > (int64_t{1} << 16))
  for (int64_t r = 0; r < g.O; ++r) {
    const int64_t grp = r / Og, o = r % Og;
    const float* wo = w + r * K;
    for (int64_t p = 0; p < np; ++p) {
      float* d = wt + grp * size + (p * Og + o) * nr;
      const int64_t* f = from.data() + p * nr;
      for (int64_t q = 0; q < nr; ++q) d[q] = f[q] >= 0 ? wo[f[q]] : 0.0f;
    }
  }
  std::vector<GemmPackedB<float>> panels;
  if (prepacked)
    for (int64_t grp = 0; grp < g.groups; ++grp) panels.push_back({wt + grp * size, Og, K, static_cast<int>(nr)});
  // the runs of taps with consecutive places in the buffer: taps [first, first + n), at offset off
  struct Run {
    int64_t first, n, off;
  };
  std::vector<Run> runs;
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t off = cl.tap(g, t / g.kw, t % g.kw, 0);
    if (!runs.empty() && runs.back().off + runs.back().n * Cg == off)
      ++runs.back().n;
    else
      runs.push_back({t, 1, off});
  }
  // At most the images whose colT fits in half of a core's L2, where the col2im's adds find it after the GEMM wrote
  // it (128x8x8 -> 256 3x3/2 at batch 64: 32 images, 2.4 MB, against 7, 1.04-1.1x on the Zen 4 guest).
  const int64_t l2 = cpu_caches().l2.per_cpu_or(int64_t{256} << 10);
  const int64_t l2_images = std::max<int64_t>(1, l2 / 2 / (L * K * static_cast<int64_t>(sizeof(float))));
  for_image_shares(g, [&](int64_t n0, int64_t n1) {
    const int64_t B = std::min(chunk_images<float>(g, n1 - n0, columns), l2_images);
    float* colT = thread_scratch<float>(kCol, static_cast<size_t>(B * L * K));
    float* buf = thread_scratch<float>(kChannelsLast, static_cast<size_t>(B * image));
    for (int64_t n = n0; n < n1; n += B) {
      const int64_t b = std::min(B, n1 - n), bl = b * L;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const float* a = gout + (n * g.O + grp * Og) * L;
        int64_t lda = L;
        if (b > 1) {
          float* gathered = thread_scratch<float>(kGathered, static_cast<size_t>(Og * bl));
          gather_planes(a, g.O * L, Og, L, b, gathered);
          a = gathered, lda = bl;
        }
        if (prepacked)
          gemm_prepacked_b(bl, a, lda, panels[static_cast<size_t>(grp)], colT, K, /*trans_a=*/true);
        else
          sgemm(true, true, bl, K, Og, 1.0f, a, lda, wt + grp * size, Og, 0.0f, colT, K);
        std::fill(buf, buf + b * image, 0.0f);
        for (int64_t j = 0; j < bl; ++j) {
          float* px = buf + cl.pixel(g, j / L, j % L);
          const float* r = colT + j * K;
          for (const Run& run : runs) {
            float* d = px + run.off;
            const float* v = r + run.first * Cg;
            const int64_t len = run.n * Cg;
#pragma omp simd  // colT and the buffer never alias
            for (int64_t q = 0; q < len; ++q) d[q] += v[q];
          }
        }
        // the interior, channels-last -> the images' planes, row by row (the direct kernels' vector transposes
        // where ConvTuning::vector_im2col, else its loops)
        const bool vector = conv_tuning().vector_im2col && direct_kernels() != nullptr;
        for (int64_t i = 0; i < b; ++i)
          for (int64_t h = 0; h < g.H; ++h)
            direct_from_channels_last(buf + i * image + ((h + g.padding[0]) * Wp + g.padding[1]) * Cg, Cg, g.W, Cg,
                                      gx + ((n + i) * g.C + grp * Cg) * HW + h * g.W, HW, vector);
      }
    }
  });
}

// Algo::packed's input gradient: a stride-1 layer's as a forward, a strided layer's through the channels-last col2im.
void backward_input_packed(float* gx, const float* gout, const float* w, const Conv2dParams& g, int64_t columns) {
  if (input_as_forward_applies(g))
    forward_packed(gx, gout, flipped_weights(w, g), {}, input_as_forward_params(g), columns);
  else
    backward_input_channels_last(gx, gout, w, g, columns);
}

// ---- direct convolution on channels-last copies (conv_direct.h) ---------------------------------------------
// Any one-group, dilation-1 layer on a CPU with AVX-512F and BW or with AVX2 and FMA (bfloat16 products: the
// AVX-512 kernels where the CPU has AVX512_BF16, or the AVX2 kernels, which emulate them in float32); each thread
// convolves its share of the images (with fewer images than threads, its share of the output positions), the
// packed weights shared.
bool direct_applies(const Conv2dParams& g) {
  const DirectKernels* k = direct_kernels();
  return k != nullptr &&
         (g.gemm_dtype == DType::Float32 ||
          (g.gemm_dtype == DType::BFloat16 && k->bf16 != nullptr)) &&
         g.groups == 1 && g.dilation[0] == 1 && g.dilation[1] == 1 && g.O <= 4096 && g.Ho > 0 && g.Wo > 0;
}

DirectConvShape direct_shape(const Conv2dParams& g) {
  return {g.C, g.H, g.W, g.O, g.kh, g.kw, g.stride[0], g.stride[1], g.padding[0], g.padding[1], g.Ho, g.Wo,
          g.gemm_dtype == DType::BFloat16, conv_tuning().direct_grad_split};
}

// Writes the rows a thread hands over into out, through the epilogue.
struct EpilogueStore final : DirectStore {
  float* out;
  const Epilogue<float>& ep;
  const Conv2dParams& g;
  int64_t n0;
  EpilogueStore(float* o, const Epilogue<float>& e, const Conv2dParams& gg, int64_t n) : out(o), ep(e), g(gg), n0(n) {}
  void operator()(int64_t image, int64_t l0, int64_t len, int64_t o0, int64_t on, const float* rows,
                  int64_t ld) const override {
    const int64_t L = g.L();
    for (int64_t o = 0; o < on; ++o) {
      const int64_t at = ((n0 + image) * g.O + o0 + o) * L + l0;
      if (ep.bias_only() && ep.shift == nullptr)
        std::memcpy(out + at, rows + o * ld, static_cast<size_t>(len) * sizeof(float));
      else
        epilogue_row(rows + o * ld, out + at, len, ep, o0 + o, ep.residual ? ep.residual + at : nullptr);
    }
  }
};

// Convolves the N images at x (`image` values apart) with the packed weights wp, handing the results to
// store_for(n0), the store of the images from n0 on: each thread its share of the images, or, with fewer images
// than threads (batch-1 inference), its share of the output positions.
template <typename StoreFor>
void direct_over_threads(const float* x, int64_t N, int64_t image, const void* wp, const DirectConvShape& s,
                         StoreFor store_for) {
  const int nt = max_threads();
  if (N >= nt) {
    parallel_shares(N, [&](int64_t n0, int64_t n1) { direct_conv_images(x + n0 * image, n1 - n0, wp, s, store_for(n0)); });
    return;
  }
#pragma omp parallel num_threads(nt)
  direct_conv_images(x, N, wp, s, store_for(0), thread_id(), num_threads());
}

void forward_direct(float* out, const float* x, const float* w, const Epilogue<float>& ep, const Conv2dParams& g) {
  const DirectConvShape s = direct_shape(g);
  void* wp = thread_scratch_bytes(kDirectWeights, direct_packed_weights_bytes(s));
  direct_pack_weights(w, s, wp);
  direct_over_threads(x, g.N, g.C * g.HW(), wp, s, [&](int64_t n0) { return EpilogueStore(out, ep, g, n0); });
}

// ---- the planar convolution (conv_direct.h: direct_planar_forward, direct_planar_weight_grad) ------------------
// Threads: the forward splits the images where every thread gets one, else the output channels (in the kernel's
// blocks of 4); the weight gradient always splits the output channels, each thread summing every image, so its
// result is the same for any number of threads.
void forward_planar(float* out, const float* x, const float* w, const Epilogue<float>& ep, const Conv2dParams& g) {
  const DirectConvShape s = direct_shape(g);
  const int64_t L = g.L(), image = g.C * g.HW();
  const float* bias = ep.bias_only() ? ep.shift : nullptr;
  auto run = [&](int64_t n0, int64_t n1, int64_t o0, int64_t o1) {
    if (ep.bias_only()) {  // one call: the taps' table and the weights' blocks are set up once
      direct_planar_forward(x + n0 * image, n1 - n0, w, bias, s, o0, o1, out + n0 * g.O * L);
      return;
    }
    for (int64_t n = n0; n < n1; ++n) {  // the rest of the epilogue image by image, while its planes are in cache
      direct_planar_forward(x + n * image, 1, w, bias, s, o0, o1, out + n * g.O * L);
      for (int64_t o = o0; o < o1; ++o) {
        const int64_t at = (n * g.O + o) * L;
        epilogue_row(out + at, out + at, L, ep, o, ep.residual ? ep.residual + at : nullptr);
      }
    }
  };
  const int nt = max_threads();
  if (g.N >= nt) {
    parallel_shares(g.N, [&](int64_t n0, int64_t n1) { run(n0, n1, 0, g.O); });
    return;
  }
  const int64_t units = ceil_div(g.O, 4);
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(nt, units)))
  {
    const int64_t t = thread_id(), k = num_threads();
    run(0, g.N, std::min(g.O, 4 * (units * t / k)), std::min(g.O, 4 * (units * (t + 1) / k)));
  }
}

void backward_weight_planar(float* gw, const float* gout, const float* x, const Conv2dParams& g) {
  const DirectConvShape s = direct_shape(g);
  const int64_t units = ceil_div(g.O, 4);
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(max_threads(), units)))
  {
    const int64_t t = thread_id(), k = num_threads();
    const int64_t o0 = std::min(g.O, 4 * (units * t / k)), o1 = std::min(g.O, 4 * (units * (t + 1) / k));
    if (o1 > o0) direct_planar_weight_grad(x, gout, g.N, s, o0, o1, gw + o0 * g.K());
  }
}

// ---- the input gradient as direct convolutions of the output gradient, one per phase of the input plane -------
// Along one axis (input size n, output size no, kernel k, stride st, padding p), input position h = st * u + r
// (phase r < st) receives kernel taps a, a + st, a + 2 st, ... (a = (r + p) mod st; T of them) from output
// positions u + e - t (e = (r + p - a) / st, t < T counting those taps). So the phase's gradient is a stride-1
// convolution of the output gradient with those T taps flipped (tap a + st (T - 1 - m) at m), padded by T - 1 - e
// before and by whatever the phase's last position reads past the output gradient after; the phase has
// ceil((n - r) / st) positions. A stride-1 layer has one phase, the whole kernel flipped (as input_as_forward);
// a 3x3 stride-2 layer four, with 1x1, 1x2, 2x1 and 2x2 kernels: 9 taps in all, so the products are those of
// im2col + GEMM, without the column matrix and its scatter-add. A phase with no taps (1x1 stride 2: three of
// four) is zero.
struct PhaseAxis {
  int64_t a = 0, taps = 0, before = 0, after = 0, size = 0;
};
PhaseAxis phase_axis(int64_t n, int64_t no, int64_t k, int64_t st, int64_t p, int64_t r) {
  PhaseAxis x;
  x.size = r < n ? (n - r + st - 1) / st : 0;
  x.a = (r + p) % st;
  x.taps = x.a < k ? (k - x.a + st - 1) / st : 0;
  const int64_t e = (r + p - x.a) / st;
  x.before = x.taps - 1 - e;
  x.after = x.size + x.taps - 1 - x.before - no;
  return x;
}

// The phases' stride-1 convolutions (ro, co: the phase's row and column axis), on the shape of the layer g.
DirectConvShape phase_shape(const Conv2dParams& g, const PhaseAxis& ro, const PhaseAxis& co) {
  DirectConvShape s{g.O, g.Ho, g.Wo, g.C, ro.taps, co.taps, 1, 1, ro.before, co.before, ro.size, co.size,
                    g.gemm_dtype == DType::BFloat16, conv_tuning().direct_grad_split};
  s.ph_end = ro.after, s.pw_end = co.after;
  return s;
}

// Calls f(row axis, column axis, r, q) for each phase (r, q) of g's input plane.
template <typename F>
void for_phases(const Conv2dParams& g, F f) {
  for (int64_t r = 0; r < g.stride[0]; ++r)
    for (int64_t q = 0; q < g.stride[1]; ++q)
      f(phase_axis(g.H, g.Ho, g.kh, g.stride[0], g.padding[0], r),
        phase_axis(g.W, g.Wo, g.kw, g.stride[1], g.padding[1], q), r, q);
}

// Every phase with positions and taps is a direct convolution the kernels run (its padding not negative: a
// padding wider than the kernel reaches no tap with some output positions).
bool direct_input_applies(const Conv2dParams& g) {
  if (!direct_applies(g) || g.C > 4096) return false;
  bool ok = true;
  for_phases(g, [&](const PhaseAxis& ro, const PhaseAxis& co, int64_t, int64_t) {
    if (ro.size > 0 && co.size > 0 && ro.taps > 0 && co.taps > 0)
      ok = ok && ro.before >= 0 && ro.after >= 0 && co.before >= 0 && co.after >= 0;
  });
  return ok;
}

// Writes a phase's rows into its positions (h, w) = (sh * u + r, sw * v + q) of the input gradient gx.
struct PhaseStore final : DirectStore {
  float* gx;
  const Conv2dParams& g;
  int64_t n0, r, q, cols;
  PhaseStore(float* x, const Conv2dParams& gg, int64_t n, int64_t rr, int64_t qq, int64_t c)
      : gx(x), g(gg), n0(n), r(rr), q(qq), cols(c) {}
  void operator()(int64_t image, int64_t l0, int64_t len, int64_t o0, int64_t on, const float* rows,
                  int64_t ld) const override {
    const int64_t sh = g.stride[0], sw = g.stride[1];
    for (int64_t o = 0; o < on; ++o) {
      float* plane = gx + ((n0 + image) * g.C + o0 + o) * g.HW();
      const float* src = rows + o * ld;
      if (sh == 1 && sw == 1) {
        std::memcpy(plane + l0, src, static_cast<size_t>(len) * sizeof(float));
        continue;
      }
      for (int64_t l = l0; l < l0 + len;) {  // a run along one row of the phase at a time
        const int64_t u = l / cols, v0 = l % cols, n = std::min(cols - v0, l0 + len - l);
        float* d = plane + (u * sh + r) * g.W + v0 * sw + q;
        for (int64_t v = 0; v < n; ++v) d[v * sw] = src[l - l0 + v];
        l += n;
      }
    }
  }
};

// Where the layer's taps go in a phase's kernel (direct_pack_weights' from_gradient): tap (a + st (T - 1 - m)) of each
// axis to m, the others nowhere; into has kh * kw entries.
DirectGradientTaps phase_taps(const Conv2dParams& g, const PhaseAxis& ro, const PhaseAxis& co, std::vector<int32_t>& into) {
  into.assign(static_cast<size_t>(g.kh * g.kw), -1);
  for (int64_t m = 0; m < ro.taps; ++m)
    for (int64_t j = 0; j < co.taps; ++j)
      into[static_cast<size_t>((ro.a + g.stride[0] * (ro.taps - 1 - m)) * g.kw + co.a + g.stride[1] * (co.taps - 1 - j))] =
          static_cast<int32_t>(m * co.taps + j);
  return {g.kh * g.kw, into.data()};
}

// Writes a phase's rows, as they come, into its own planes (image, channel, u, v): an image group's share of a
// buffer that phase_interleave then spreads into the input gradient.
struct PhasePlaneStore final : DirectStore {
  float* planes;
  int64_t C, plane;  // the layer's input channels; values a phase plane
  PhasePlaneStore(float* p, int64_t c, int64_t pl) : planes(p), C(c), plane(pl) {}
  void operator()(int64_t image, int64_t l0, int64_t len, int64_t o0, int64_t on, const float* rows,
                  int64_t ld) const override {
    for (int64_t o = 0; o < on; ++o)
      std::memcpy(planes + (image * C + o0 + o) * plane + l0, rows + o * ld, static_cast<size_t>(len) * sizeof(float));
  }
};

// One phase of a strided layer's input gradient: its direct convolution of the output gradient and where its
// planes go.
struct PhaseJob {
  DirectConvShape s;
  const void* wp = nullptr;  // its packed weights
  int64_t r = 0, q = 0;      // the phase
  int64_t rows = 0, cols = 0;
  bool empty = false;        // positions but no taps: zeros
};

// gx (images [0, n), planes H x W) from the phases' planes, phase p's at planes + at[p] * n (n x C x rows x cols).
// Row h of an image's channel takes phase (h % sh, .)'s row h / sh: with sw = 2, two phases' rows alternate along it
// (4 pairs at a time through SSE's unpacks: ResNet18's phase rows are 2-28 values), else each phase's values go sw
// apart.
void phase_interleave(const std::vector<PhaseJob>& jobs, const std::vector<int64_t>& at, const float* planes,
                      int64_t n, const Conv2dParams& g, float* gx) {
  const int64_t sh = g.stride[0], sw = g.stride[1], H = g.H, W = g.W, np = sh * sw;
  std::vector<const float*> src(static_cast<size_t>(np));  // each phase's plane of the channel (null: zeros)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < g.C; ++c) {
      for (int64_t p = 0; p < np; ++p) {
        const PhaseJob& j = jobs[static_cast<size_t>(p)];
        src[static_cast<size_t>(p)] =
            j.empty ? nullptr : planes + at[static_cast<size_t>(p)] * n + (i * g.C + c) * j.rows * j.cols;
      }
      float* dst = gx + (i * g.C + c) * H * W;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t r = h % sh, u = h / sh;
        float* d = dst + h * W;
        const float* p0 = src[static_cast<size_t>(r * sw)];
        if (sw == 2 && p0 && src[static_cast<size_t>(r * 2 + 1)]) {
          const int64_t n1 = W / 2;  // columns of phase 1; phase 0 has one more where W is odd
          const float* a = p0 + u * jobs[static_cast<size_t>(r * 2)].cols;
          const float* b = src[static_cast<size_t>(r * 2 + 1)] + u * n1;
          int64_t v = 0;
#if defined(__SSE2__)
          for (; v + 4 <= n1; v += 4) {
            const __m128 x = _mm_loadu_ps(a + v), y = _mm_loadu_ps(b + v);
            _mm_storeu_ps(d + 2 * v, _mm_unpacklo_ps(x, y));
            _mm_storeu_ps(d + 2 * v + 4, _mm_unpackhi_ps(x, y));
          }
#endif
          for (; v < n1; ++v) d[2 * v] = a[v], d[2 * v + 1] = b[v];
          if (W % 2) d[W - 1] = a[n1];
          continue;
        }
        for (int64_t q = 0; q < sw && q < W; ++q) {
          const float* p = src[static_cast<size_t>(r * sw + q)];
          const int64_t cols = jobs[static_cast<size_t>(r * sw + q)].cols;
          for (int64_t v = 0; v * sw + q < W; ++v) d[v * sw + q] = p ? p[u * cols + v] : 0.0f;
        }
      }
    }
}

// gx = the input gradient of g, as the phases' direct convolutions of gout (direct_input_applies). Strided, with
// an image a thread or more: each thread runs all phases on a few images at a time into phase planes that stay in
// its L2, then interleaves them into gx; the phases' weights are packed first, all of them. Phase by phase over all
// images, each phase writing its values sw apart into gx as they came (the form kept for fewer images than
// threads), a phase's scattered writes had taken 9% of ResNet18's 128x8x8 -> 256 3x3/2 and every phase touched
// every line of gx (perf, Zen 4 guest).
void backward_input_direct(float* gx, const float* gout, const float* w, const Conv2dParams& g) {
  std::vector<PhaseJob> jobs;
  std::vector<std::vector<int32_t>> into;  // each phase's taps' table (taps[p] points into into[p])
  into.reserve(static_cast<size_t>(g.stride[0] * g.stride[1]));
  std::vector<DirectGradientTaps> taps;
  bool empty = false;
  for_phases(g, [&](const PhaseAxis& ro, const PhaseAxis& co, int64_t r, int64_t q) {
    PhaseJob j;
    j.r = r, j.q = q, j.rows = ro.size, j.cols = co.size;
    j.empty = ro.size == 0 || co.size == 0 || ro.taps == 0 || co.taps == 0;
    empty = empty || (ro.size > 0 && co.size > 0 && j.empty);
    if (!j.empty) j.s = phase_shape(g, ro, co);
    jobs.push_back(j);
    into.emplace_back();
    taps.push_back(j.empty ? DirectGradientTaps{} : phase_taps(g, ro, co, into.back()));
  });
  // every phase's packed weights, one after the other (64-byte aligned)
  std::vector<size_t> wat(jobs.size(), 0);
  size_t wbytes = 0;
  for (size_t p = 0; p < jobs.size(); ++p)
    if (!jobs[p].empty) wat[p] = wbytes, wbytes += (direct_packed_weights_bytes(jobs[p].s) + 63) / 64 * 64;
  auto* wbuf = static_cast<uint8_t*>(thread_scratch_bytes(kDirectWeights, std::max<size_t>(wbytes, 64)));
  std::vector<DirectConvShape> ps;
  std::vector<void*> pw;
  std::vector<DirectGradientTaps> pt;
  for (size_t p = 0; p < jobs.size(); ++p)
    if (!jobs[p].empty) {
      jobs[p].wp = wbuf + wat[p];
      ps.push_back(jobs[p].s), pw.push_back(wbuf + wat[p]), pt.push_back(taps[p]);
    }
  direct_pack_phases(w, static_cast<int>(ps.size()), ps.data(), pw.data(), pt.data());
  const int64_t image = g.C * g.HW(), gimage = g.O * g.L();
  const bool strided = g.stride[0] != 1 || g.stride[1] != 1;
  if (strided && g.N >= max_threads()) {
    // phase p's planes of n images start at at[p] * n: an image's values of the phases before it, times n
    std::vector<int64_t> at(jobs.size(), 0);
    int64_t per_image = 0;
    for (size_t p = 0; p < jobs.size(); ++p) at[p] = per_image, per_image += g.C * jobs[p].rows * jobs[p].cols;
    // images a group: its phase planes (an image's input gradient's values) in about half a core's L2
    const int64_t l2 = cpu_caches().l2.per_cpu_or(int64_t{1} << 20);
    const int64_t group = std::max<int64_t>(1, l2 / 2 / (per_image * static_cast<int64_t>(sizeof(float))));
    parallel_shares(g.N, [&](int64_t n0, int64_t n1) {
      float* planes = thread_scratch<float>(kPhasePlanes, static_cast<size_t>(std::min(group, n1 - n0) * per_image));
      for (int64_t i0 = n0; i0 < n1; i0 += group) {
        const int64_t gn = std::min(group, n1 - i0);
        for (size_t p = 0; p < jobs.size(); ++p)
          if (!jobs[p].empty)
            direct_conv_images(gout + i0 * gimage, gn, jobs[p].wp, jobs[p].s,
                               PhasePlaneStore(planes + at[p] * gn, g.C, jobs[p].rows * jobs[p].cols));
        phase_interleave(jobs, at, planes, gn, g, gx + i0 * image);
      }
    });
    return;
  }
  if (empty) parallel_shares(g.N, [&](int64_t n0, int64_t n1) { std::fill(gx + n0 * image, gx + n1 * image, 0.0f); });
  for (const PhaseJob& j : jobs)
    if (!j.empty)
      direct_over_threads(gout, g.N, gimage, j.wp, j.s,
                          [&](int64_t n0) { return PhaseStore(gx, g, n0, j.r, j.q, j.cols); });
}

// One image whose column matrix would overflow L2 (the 7x7 stem at 224x224: 147 x 12544 values) is convolved in
// bands of output columns, each band's rows written by the shifted im2col into half of L2 and multiplied while
// they are there; the GEMM then packs from L2, not from memory. Only where a band still holds 512 columns (the
// GEMM's usual width; short K, as in a stem): deeper layers would cut into narrow GEMMs, unmeasured. The bf16
// GEMM and a single-threaded float32 GEMM (an image per thread) sum each output over K in the same order as one
// GEMM would, so the result is the same; with fewer images than threads the float32 GEMM may split its threads
// differently and round differently. False where the shifted form does not apply or the matrix fits.
template <typename S, typename T>
bool forward_banded(const S* x, const S* w, T* c, int64_t ldc, T beta, const Conv2dParams& g) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<T, float> && (std::is_same_v<S, float> || std::is_same_v<S, uint16_t>)) {
    const int64_t K = g.K(), L = g.L(), bytes = static_cast<int64_t>(sizeof(S));
    const int64_t l2 = cpu_caches().l2.per_cpu_or(int64_t{256} << 10);
    const int64_t band = l2 / 2 / (K * bytes) / 64 * 64;
    if (K * L * bytes <= l2 || band < 512 || vector_im2col_kind(g, sizeof(S)) != VectorIm2col::shifted) return false;
    const Im2colTables& tab = im2col_tables(g, VectorIm2col::shifted, 64 / bytes);
    int64_t plane = 0;
    const S* src = shifted_source(x, g, tab, &plane);
    S* col = thread_scratch<S>(kCol, static_cast<size_t>(K * band));
    for (int64_t l0 = 0; l0 < L; l0 += band) {
      const int64_t nb = std::min(band, L - l0);
      im2col_shifted_columns(src, plane, col, nb, g, tab, l0, l0 + nb);
      gemm(g, false, false, g.Og(), nb, K, w, K, col, nb, beta, c + l0, ldc);
    }
    return true;
  }
#endif
  (void)x, (void)w, (void)c, (void)ldc, (void)beta, (void)g;
  return false;
}

// T: the output's type; S: the GEMM operands' (T itself, or uint16_t bfloat16 bits under autocast,
// whose x and w the caller has rounded once, so im2col moves half the bytes).
template <typename T, typename S = T>
void forward_typed(T* out, const S* x, const S* w, const Epilogue<T>& ep, const Conv2dParams& g, const Algo& a) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  if constexpr (std::is_same_v<S, float> && std::is_same_v<T, float>) if (a.kind == Algo::packed) {
    forward_packed(out, x, w, ep, g, a.columns);
    return;
  }
  if constexpr (std::is_same_v<S, T>) if (const int tile = a.winograd_tile()) {
    // the rest of the epilogue image by image, as each leaves the transforms (in cache)
    const int64_t L = g.L();
    std::function<void(int64_t, int64_t)> rest;
    if (!ep.bias_only())
      rest = [&](int64_t n0, int64_t n1) {
        for (int64_t p = n0 * g.O; p < n1 * g.O; ++p)
          epilogue_row(out + p * L, out + p * L, L, ep, p % g.O, ep.residual ? ep.residual + p * L : nullptr);
      };
    winograd_conv(out, x, w, false, ep.bias_only() ? ep.shift : nullptr, g.N, g.C, g.H, g.W, g.O, g.padding[0], tile, rest);
    return;
  }
  forward_chunks(out, x, w, ep, g, a.columns, [&](int64_t) {
    return [&](const S* xg, const S* wg, int64_t b, T* c, int64_t ldc, T beta) {
      const int64_t bl = b * L;
      if (b == 1 && !g.pointwise() && forward_banded(xg, wg, c, ldc, beta, g)) return;
      const S* src = xg;
      if (b > 1 || !g.pointwise()) {  // one image of a 1x1 stride-1 layer is its own column matrix
        S* col = thread_scratch<S>(kCol, static_cast<size_t>(K * bl));
        if (g.pointwise())
          gather_planes(xg, g.C * g.HW(), K, L, b, col);
        else
          for (int64_t i = 0; i < b; ++i) im2col(xg + i * g.C * g.HW(), col + i * L, bl, g);
        src = col;
      }
      gemm(g, false, false, Og, bl, K, wg, K, src, bl, beta, c, ldc);
    };
  });
}

template <typename T, typename S = T>
void backward_input_typed(T* gx, const S* gout, const S* w, const Conv2dParams& g, const Algo& a) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  if constexpr (std::is_same_v<S, float> && std::is_same_v<T, float>) if (a.kind == Algo::packed) {
    backward_input_packed(gx, gout, w, g, a.columns);
    return;
  }
  if constexpr (std::is_same_v<S, T>) if (const int tile = a.winograd_tile()) {
    // the input gradient of a stride-1 3x3 convolution with padding p is the convolution of the
    // output gradient with the flipped, transposed kernels and padding 2 - p
    winograd_conv(gx, gout, w, true, static_cast<const T*>(nullptr), g.N, g.O, g.Ho, g.Wo, g.C, 2 - g.padding[0], tile);
    return;
  }
  for_image_shares(g, [&](int64_t n0, int64_t n1) {
    const int64_t B = chunk_images<T>(g, n1 - n0, a.columns);
    for (int64_t n = n0; n < n1; n += B) {
      const int64_t b = std::min(B, n1 - n), bl = b * L;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const S* go = gout + (n * g.O + grp * Og) * L;
        T* gxg = gx + (n * g.C + grp * g.Cg()) * g.HW();
        const S* wg = w + grp * Og * K;
        if (b == 1) {
          if (g.pointwise()) {
            gemm(g, true, false, K, L, Og, wg, K, go, L, T(0), gxg, L);
          } else {
            T* col = thread_scratch<T>(kCol, static_cast<size_t>(K * L));
            gemm(g, true, false, K, L, Og, wg, K, go, L, T(0), col, L);
            std::fill(gxg, gxg + g.Cg() * g.HW(), T(0));
            col2im_add(col, L, gxg, g);
          }
          continue;
        }
        S* gathered = thread_scratch<S>(kGathered, static_cast<size_t>(Og * bl));
        gather_planes(go, g.O * L, Og, L, b, gathered);
        T* col = thread_scratch<T>(kCol, static_cast<size_t>(K * bl));
        gemm(g, true, false, K, bl, Og, wg, K, gathered, bl, T(0), col, bl);
        if (g.pointwise()) {
          scatter_planes(col, K, L, b, gxg, g.C * g.HW());
        } else {
          for (int64_t i = 0; i < b; ++i) {
            T* gxi = gxg + i * g.C * g.HW();
            std::fill(gxi, gxi + g.Cg() * g.HW(), T(0));
            col2im_add(col + i * L, bl, gxi, g);
          }
        }
      }
    }
  });
}

template <typename T, typename S = T>
void backward_weight_typed(T* gw, const S* gout, const S* x, const Conv2dParams& g, const Algo& a) {
  const int64_t K = g.K(), L = g.L(), Og = g.Og();
  const int64_t wsize = g.O * K;
  if (g.N == 0) {
    std::fill(gw, gw + wsize, T(0));
    return;
  }
  if constexpr (std::is_same_v<S, float> && std::is_same_v<T, float>) if (a.kind == Algo::packed) {
    backward_weight_packed(gw, gout, x, g, a.columns);
    return;
  }
  if constexpr (std::is_same_v<S, T>) if (a.kind == Algo::winograd) {  // F(3x3, 2x2) over the output gradient's tiles
    winograd_weight_grad(gw, x, gout, g.N, g.C, g.H, g.W, g.O, g.padding[0]);
    return;
  }
  // acc += the gradient of images [n0, n1); `first`: acc holds garbage until the first chunk
  auto accumulate = [&](int64_t n0, int64_t n1, T* acc) {
    const int64_t B = chunk_images<S>(g, n1 - n0, a.columns);
    bool first = true;
    for (int64_t n = n0; n < n1; n += B) {
      const int64_t b = std::min(B, n1 - n), bl = b * L;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const S* go = gout + (n * g.O + grp * Og) * L;
        const S* xg = x + (n * g.C + grp * g.Cg()) * g.HW();
        T* ag = acc + grp * Og * K;
        const T beta = first ? T(0) : T(1);
        if (b == 1) {
          const S* src = xg;
          if (!g.pointwise()) {
            S* col = thread_scratch<S>(kCol, static_cast<size_t>(K * L));
            im2col(xg, col, L, g);
            src = col;
          }
          gemm(g, false, true, Og, K, L, go, L, src, L, beta, ag, K);
          continue;
        }
        S* gathered = thread_scratch<S>(kGathered, static_cast<size_t>(Og * bl));
        gather_planes(go, g.O * L, Og, L, b, gathered);
        S* col = thread_scratch<S>(kCol, static_cast<size_t>(K * bl));
        if (g.pointwise())
          gather_planes(xg, g.C * g.HW(), K, L, b, col);
        else
          for (int64_t i = 0; i < b; ++i) im2col(xg + i * g.C * g.HW(), col + i * L, bl, g);
        gemm(g, false, true, Og, K, bl, gathered, bl, col, bl, beta, ag, K);
      }
      first = false;
    }
    if (first) std::fill(acc, acc + wsize, T(0));
  };
  sum_over_image_shares(g, gw, wsize, accumulate);
}

template <typename T>
void backward_bias_typed(T* gb, const T* gout, int64_t N, int64_t O, int64_t L) {
#pragma omp parallel for schedule(static) if (N * O * L > kParallelGrain && O > 1)
  for (int64_t o = 0; o < O; ++o) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* p = gout + (n * O + o) * L;
      T part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t l = 0; l < L; ++l) part += p[l];
      s += part;
    }
    gb[o] = static_cast<T>(s);
  }
}

// Under bfloat16 autocast each float32 operand is rounded once per call into the calling thread's
// scratch slot (in parallel): im2col, the image gathering and the GEMMs' packing then move 2-byte
// values, and the GEMMs never convert the same value twice.
bool low_precision(const Tensor& t, const Conv2dParams& g) {
  if (t.dtype() != DType::Float32 || g.gemm_dtype == DType::Float32) return false;
  if (g.gemm_dtype != DType::BFloat16)
    fail("conv2d: the CPU convolves float32 in float32 or bfloat16, not {}", dtype_name(g.gemm_dtype));
  return true;
}

// One spare value past the end: im2col's gathers read a bfloat16 value as the 4-byte word starting at it.
const uint16_t* rounded_bf16(const Tensor& t, int slot) {
  const int64_t n = t.numel();
  uint16_t* dst = thread_scratch<uint16_t>(slot, static_cast<size_t>(n + 1));
  dst[n] = 0;
  const float* src = t.data_ptr<float>();
  constexpr int64_t kBlock = int64_t{1} << 16;
#pragma omp parallel for schedule(static) if (n > 4 * kBlock)
  for (int64_t i = 0; i < n; i += kBlock) float_to_bf16(src + i, dst + i, std::min(kBlock, n - i));
  return dst;
}

// ---- bfloat16 forward with an implicit im2col (stride 1) ----------------------------------------
// With the input padded once into planes of Hp x Wp (zeros around), row (c, ki, kj) of the column
// matrix, taken over a "wide" output of Ho x Wp positions, is the padded plane c shifted by
// ki * dh * Wp + kj * dw: a view, never copied. The GEMM reads those rows through pointers
// (gemm_bf16_rows); of each wide output row the first Wo values are the convolution, the last
// Wp - Wo read across the row's end and are dropped when the result is compacted into `out`
// (with the bias). Worth it where im2col costs the most next to the GEMM: output planes of at
// least kImplicitMinPlane pixels, where the dropped columns are a few percent.
constexpr int64_t kImplicitMinPlane = 400;

bool use_implicit(const Conv2dParams& g) {
  return g.stride[0] == 1 && g.stride[1] == 1 && g.groups == 1 && !g.pointwise() && g.L() >= kImplicitMinPlane &&
         conv_tuning().target_columns > 1;
}

// x rounded to bfloat16 into zero-bordered planes (N*C, Hp, Wp), plus `slack` zeros after the last.
const uint16_t* rounded_bf16_padded(const Tensor& x, const Conv2dParams& g, int64_t slack, int slot) {
  const int64_t Hp = g.H + 2 * g.padding[0], Wp = g.W + 2 * g.padding[1], planes = g.N * g.C;
  uint16_t* dst = thread_scratch<uint16_t>(slot, static_cast<size_t>(planes * Hp * Wp + slack));
  const float* src = x.data_ptr<float>();
  std::fill(dst + planes * Hp * Wp, dst + planes * Hp * Wp + slack, uint16_t{0});
#pragma omp parallel for schedule(static) if (planes * Hp * Wp > (int64_t{1} << 18))
  for (int64_t pl = 0; pl < planes; ++pl) {
    uint16_t* d = dst + pl * Hp * Wp;
    std::fill(d, d + g.padding[0] * Wp, uint16_t{0});
    for (int64_t h = 0; h < g.H; ++h) {
      uint16_t* row = d + (h + g.padding[0]) * Wp;
      std::fill(row, row + g.padding[1], uint16_t{0});
      float_to_bf16(src + (pl * g.H + h) * g.W, row + g.padding[1], g.W);
      std::fill(row + g.padding[1] + g.W, row + Wp, uint16_t{0});
    }
    std::fill(d + (g.H + g.padding[0]) * Wp, d + Hp * Wp, uint16_t{0});
  }
  return dst;
}

void forward_implicit(float* out, const uint16_t* xpad, const uint16_t* w, const float* bias, const Conv2dParams& g) {
  const int64_t Hp = g.H + 2 * g.padding[0], Wp = g.W + 2 * g.padding[1];
  const int64_t K = g.K(), L = g.L(), wide = g.Ho * Wp;
  for_image_shares(g, [&](int64_t n0, int64_t n1) {
    const uint16_t** rows = thread_scratch<const uint16_t*>(kGathered, static_cast<size_t>(K));
    float* tmp = thread_scratch<float>(kCol, static_cast<size_t>(g.O * wide));
    for (int64_t n = n0; n < n1; ++n) {
      const uint16_t* xi = xpad + n * g.C * Hp * Wp;
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t ki = 0; ki < g.kh; ++ki)
          for (int64_t kj = 0; kj < g.kw; ++kj)
            rows[(c * g.kh + ki) * g.kw + kj] = xi + c * Hp * Wp + ki * g.dilation[0] * Wp + kj * g.dilation[1];
      gemm_bf16_rows(false, g.O, wide, K, 1.0f, w, K, rows, 0.0f, tmp, wide);
      float* oi = out + n * g.O * L;
      for (int64_t o = 0; o < g.O; ++o) {
        const float v = bias ? bias[o] : 0.0f;
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const float* s = tmp + o * wide + oh * Wp;
          float* d = oi + o * L + oh * g.Wo;
#pragma omp simd
          for (int64_t ow = 0; ow < g.Wo; ++ow) d[ow] = s[ow] + v;
        }
      }
    }
  });
}

// ---- the choice of algorithm per layer shape (conv.h) --------------------------------------------

enum class Pass { forward, input, weight };

std::string algo_name(const Algo& a) {
  switch (a.kind) {
    case Algo::winograd:
      return "winograd";
    case Algo::winograd4x4:
      return "winograd4x4";
    case Algo::implicit:
      return "implicit";
    case Algo::packed:
      return "packed/" + std::to_string(a.columns);
    case Algo::direct:
      return "direct";
    case Algo::planar:
      return "planar";
    default:
      return "gemm/" + std::to_string(a.columns);
  }
}

// "fwd float32 bf16 N=32 C=64 H=56 W=56 O=64 k=3x3 s=1x1 p=1x1 d=1x1 g=1 t=2": what decides the timings.
std::string algo_key(Pass pass, DType dtype, const Conv2dParams& g) {
  const char* p = pass == Pass::forward ? "fwd" : pass == Pass::input ? "bwd_input" : "bwd_weight";
  return std::string(p) + " " + std::string(dtype_name(dtype)) + " " + std::string(dtype_name(g.gemm_dtype)) +
         " N=" + std::to_string(g.N) +
         " C=" + std::to_string(g.C) + " H=" + std::to_string(g.H) + " W=" + std::to_string(g.W) +
         " O=" + std::to_string(g.O) + " k=" + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
         " s=" + std::to_string(g.stride[0]) + "x" + std::to_string(g.stride[1]) +
         " p=" + std::to_string(g.padding[0]) + "x" + std::to_string(g.padding[1]) +
         " d=" + std::to_string(g.dilation[0]) + "x" + std::to_string(g.dilation[1]) +
         " g=" + std::to_string(g.groups) + " t=" + std::to_string(max_threads());
}

// What the fixed rules pick (DL_CONV_ALGO=heuristic, and the search's first candidate).
// The implicit GEMM can run the pass (float32 only; a stride-1 input gradient as a forward of the output gradient,
// a strided one through the channels-last col2im).
bool packed_possible(Pass pass, DType dtype, const Conv2dParams& g, bool low) {
  if (dtype != DType::Float32 || low) return false;
  if (pass == Pass::input)
    return input_as_forward_applies(g) ? packed_applies(input_as_forward_params(g), g.N) : input_channels_last_applies(g);
  return packed_applies(g, g.N);
}

// The direct convolution can run the pass (forwards, input gradients as forwards by phases, weight gradients):
// float32 tensors, multiplied in float32 or (autocast) in bfloat16 (g.gemm_dtype, direct_applies).
bool direct_possible(Pass pass, DType dtype, const Conv2dParams& g) {
  if (dtype != DType::Float32) return false;
  if (pass == Pass::input) return direct_input_applies(g);
  if (pass == Pass::weight)  // the channels-last copies of the whole batch under 1 GiB
    return direct_applies(g) && direct_weight_grad_bytes(direct_shape(g), g.N) <= (size_t{1} << 30);
  return direct_applies(g);
}

// The planar convolution can run the pass: forwards and weight gradients of float32 one-group layers with at most
// 48 shifted planes an image (C * kw * the row stride: a stem's 3 x 7 x 2 = 42).
bool planar_possible(Pass pass, DType dtype, const Conv2dParams& g, bool low) {
  return conv_tuning().planar > 0 && pass != Pass::input && dtype == DType::Float32 && !low && g.groups == 1 &&
         g.dilation[0] == 1 && g.dilation[1] == 1 && g.C * g.kw * g.stride[0] <= 48 &&
         direct_planar_applies(direct_shape(g));
}

// ... and where the fixed rule takes it: every forward it can run, and the weight gradients of stride-1 layers with
// up to 36 taps (C * kh * kw). Measured on the AVX2 Zen 4 guest (2 threads, in isolation) against the fixed rule's
// choice before it (GEMM or direct): the scratch CNN's 1x28x28 -> 48 3x3 forward 1.7x (130 GFLOP/s), weight
// gradient 2.2-2.8x (131-137); 3x32x32 -> 64 1.6x and 1.45x; 1x28x28 -> 32 5x5 2.1x and 1.4x (against the direct
// weight gradient); 4x32x32 -> 64 1.4x and 1.4x. Forwards with more channels or strided, against the better of
// the fixed rule and the direct convolution: 8x32x32 -> 32 3x3 1.53x, 16x32x32 -> 64 1.10x, 16x16x16 -> 64 1.01x,
// 6x28x28 -> 16 5x5 1.17x; 3x3 / 2 and 5x5 / 2 layers on 1-3 channels 1.4-1.9x. ResNet18's 7x7 / 2 stem ran level
// with the direct convolution (0.92-1.17x over several paired runs, the spread the machine's; 150-160 GFLOP/s at
// 224x224), and in the training step at 64 the search may keep either. Strided weight gradients ran level with the direct one (0.95-1.04x on
// the stem and 3x3 / 2 and 5x5 / 2 layers), and a 1x1 layer's (16 channels) 0.9x: those the search decides.
bool planar_fast_for(Pass pass, const Conv2dParams& g) {
  if (pass == Pass::forward) return true;
  return g.C * g.kh * g.kw <= 36 && g.stride[0] == 1 && g.stride[1] == 1 && g.kh * g.kw > 1;
}

// ... and where the fixed rule takes it: measured on a Zen 4 (2 threads) against the implicit GEMM (float32) and
// the bfloat16 GEMM or implicit im2col, ResNet18's and the scratch CNN's 3x3 forwards ran 1.0-1.2x faster in
// float32 (Winograd's window excepted: there Winograd stays ahead) and 1.1-1.4x in bfloat16 (400+ GFLOP/s), their
// stride-1 input gradients 1.0-1.2x and 1.0-1.3x; the 7x7 stem 0.9-1.15x in float32 but 0.85-0.97x in bfloat16
// (3 channels padded to 4); 1x1 stride-2 layers 0.9x, one input channel 0.6-0.75x, and an input gradient to one
// channel 0.14-0.24x (a vector of 16 output channels holding 1).
// The weight gradient where its threads split the images (its tiles fit in a core's L2: up to 128 channels in
// ResNet18): those layers measured 1.03-1.20x the GEMM paths in float32 and bfloat16; layers split by tiles
// (256 channels and more) 0.77-1.07x, the stem 0.93-1.21x, one input channel 0.64-0.83x, 1x1 0.80-0.91x. Layers
// split by tiles but on planes where it skips a tenth or more of the products (the zero padding): ResNet18's
// 256x4x4 and 512x2x2 1.14-1.49x, stride 2 onto them 1.04-1.22x, the scratch CNN's 256x3x3 1.02-1.30x, 512x7x7
// 0.96-1.08x (float32, bfloat16). On AVX2 CPUs the channels-last implicit GEMM stays the rule (channels_last_fast)
// but where the direct convolution skips a quarter or more of the products: since its output gradient is copied
// in blocks and the tiles split by blocks (Zen 4 guest, paired in isolation), the scratch CNN's 256x3x3 -> 512
// (40% skipped) ran 1.4-1.5x the implicit GEMM, ResNet18's 512x2x2 (56%) 1.6x and 256x4x4 -> 512 3x3/2 (31%)
// 1.1-1.2x, 128x8x8 -> 256 3x3/2 (16%) level.
constexpr double kDirectOverChannelsLastSkip = 0.25;
bool direct_fast_for(Pass pass, const Conv2dParams& g, bool low) {
  if (pass == Pass::weight) {  // split by images, or skipping a tenth or more of the products (small planes)
    const DirectConvShape s = direct_shape(g);
    if (!low && channels_last_fast(g) && packed_possible(pass, DType::Float32, g, false) &&
        direct_weight_grad_skipped_share(s) < kDirectOverChannelsLastSkip)
      return false;
    return g.kh * g.kw > 1 && g.O >= 32 && g.C >= 16 && s.grad_split != 1 &&
           (direct_weight_grad_by_images(s, g.N) || direct_weight_grad_skipped_share(s) >= kMinSkippedShare);
  }
  // strided input gradients (the phases of backward_input_direct): 0.85-1.12x im2col + GEMM on ResNet18's stride-2
  // layers on an AVX2 Zen 3 (2 threads; ahead on planes of 8x8 and smaller); since the phases run together on a
  // few images at a time, 0.98-1.12x the channels-last col2im on its 3x3/2 layers at 64x64 and 0.93-1.0x at 224x224
  // (Zen 4 guest, in isolation, paired), so the fixed rule takes them only where the direct convolution skips a
  // quarter or more of the layer's products (the padding of small planes, as for the weight gradient): there, on
  // ResNet18's 256x4x4 -> 512 3x3/2, 1.12x in isolation and 1.2x with caches flushed between calls (float32)
  if (pass == Pass::input && (g.stride[0] != 1 || g.stride[1] != 1))
    return !low && g.kh * g.kw > 1 && g.C >= 32 &&
           direct_weight_grad_skipped_share(direct_shape(g)) >= kDirectOverChannelsLastSkip;
  const Conv2dParams f = pass == Pass::input ? input_as_forward_params(g) : g;
  return f.kh * f.kw > 1 && f.O >= 32 && (low ? f.C >= 16 : f.C * f.kw >= 16);
}

// ... and where the fixed rule takes it (measured per pass: packed_fast, input_as_forward_applies'
// comment, packed_weight_fast).
bool packed_fast_for(Pass pass, const Conv2dParams& g) {
  switch (pass) {
    case Pass::forward:
      return packed_fast(g);
    case Pass::input:
      if (!input_as_forward_applies(g)) return input_channels_last_fast(g);
      return g.C >= 64 && g.Wo >= 4 && packed_fast(input_as_forward_params(g));
    default:
      return packed_weight_fast(g);
  }
}

Algo heuristic_algo(Pass pass, DType dtype, const Conv2dParams& g, bool low) {
  Algo a;
  a.columns = conv_tuning().target_columns;
  const int packed = conv_tuning().packed_forward;  // 0 never, 1 where measured faster, 2 always
  const bool winograd = !low && use_winograd(g);
  const int direct = conv_tuning().direct;  // likewise
  const bool direct_ok = direct > 0 && direct_possible(pass, dtype, g);
  if (planar_possible(pass, dtype, g, low) && (conv_tuning().planar == 2 || planar_fast_for(pass, g)))
    a.kind = Algo::planar;
  else if (direct_ok && (direct == 2 || (!winograd && direct_fast_for(pass, g, low))))
    a.kind = Algo::direct;
  else if (pass == Pass::forward && low && use_implicit(g))
    a.kind = Algo::implicit;
  else if (!winograd && packed > 0 && packed_possible(pass, dtype, g, low) && (packed == 2 || packed_fast_for(pass, g)))
    a.kind = Algo::packed;
  else if (winograd)
    a = Algo{conv_tuning().winograd_tile == 4 && pass != Pass::weight ? Algo::winograd4x4 : Algo::winograd, 0};
  return a;
}

// Every algorithm that can run the pass: the heuristic's first, then GEMMs whose column targets give a
// different number of images per GEMM, Winograd, the implicit im2col.
std::vector<Algo> candidates(Pass pass, DType dtype, const Conv2dParams& g, bool low, size_t operand_bytes) {
  std::vector<Algo> c{heuristic_algo(pass, dtype, g, low)};
  auto add = [&](const Algo& a) {
    if (std::find(c.begin(), c.end(), a) == c.end()) c.push_back(a);
  };
  // column targets that give a thread's share the same number of images per GEMM are the same algorithm
  const int nt = max_threads();
  const int64_t avail = g.N >= nt ? (g.N + nt - 1) / nt : g.N;
  // (gc: the geometry that is chunked; for the packed input gradient, that of the forward it runs as)
  auto add_columns = [&](Algo::Kind kind, const Conv2dParams& gc) {
    std::vector<int64_t> seen;
    for (const Algo& a : c)
      if (a.kind == kind) seen.push_back(chunk_images_bytes(gc, avail, a.columns, operand_bytes));
    for (int64_t cols : {256, 512, 1024, 2048}) {
      const int64_t b = chunk_images_bytes(gc, avail, cols, operand_bytes);
      if (std::find(seen.begin(), seen.end(), b) != seen.end()) continue;
      seen.push_back(b);
      add(Algo{kind, cols});
    }
  };
  add_columns(Algo::gemm, g);
  if (packed_possible(pass, dtype, g, low))
    add_columns(Algo::packed, pass == Pass::input && input_as_forward_applies(g) ? input_as_forward_params(g) : g);
  if (pass == Pass::weight && !low && winograd_applies(g)) add(Algo{Algo::winograd, 0});  // F(3x3, 2x2)
  if (pass != Pass::weight && !low && winograd_applies(g)) {
    add(Algo{Algo::winograd, 0});
    // F(4x4) rounds up to 20x more than the GEMMs (ConvTuning::winograd_tile): a candidate only when asked for
    if (conv_tuning().winograd_tile == 4) add(Algo{Algo::winograd4x4, 0});
  }
  if (direct_possible(pass, dtype, g) && conv_tuning().direct > 0) add(Algo{Algo::direct, 0});
  if (planar_possible(pass, dtype, g, low)) add(Algo{Algo::planar, 0});
  if (pass == Pass::forward && low && g.stride[0] == 1 && g.stride[1] == 1 && g.groups == 1 && !g.pointwise())
    add(Algo{Algo::implicit, 0});
  return c;
}

constexpr double kSwitchMargin = 0.9;

// Runs the pass with the algorithm chosen for its shape: the heuristic's in heuristic mode; else the one
// remembered (this process or the cache file), or the fastest of the candidates, timed here on this call's
// data (each written into the real output, which the chosen algorithm writes last).
template <typename Run>
void choose_and_run(Pass pass, DType dtype, const Conv2dParams& g, bool low, size_t operand_bytes, Run run) {
  if (!conv_algo_search_enabled()) {
    run(heuristic_algo(pass, dtype, g, low));
    return;
  }
  const std::vector<Algo> cands = candidates(pass, dtype, g, low, operand_bytes);
  // the candidates' names are part of the key (as a hash), so a choice made among other candidates (an
  // older build, another DL_CONV_* setting) is not reused: it is measured again; so is the revision of the
  // kernels below, raised when a change makes an old timing stale (2: the vector im2col; 3: the direct weight
  // gradient split by images; 4: the direct convolution skips the taps in the zero padding; 5: Winograd on
  // channels-last blocks with its transformed weights packed once, and for weight gradients; 6: Winograd's weight
  // gradient with shared sums where the images give the threads few tiles; 7: the implicit GEMM's weight gradient
  // likewise; 8: the channels-last weight gradient and col2im; 9: the implicit GEMM forward's AVX2 packer; 10:
  // Winograd's kernels transformed straight into the GEMMs' panels, longer blocks where they are large; 11: its
  // weight gradient's sums split by images where they fit in about L2, the channels-last col2im's chunks in L2; 12:
  // the planar convolution; 13: the direct weight gradient's output gradient in blocks, its chunks sized by L2; 14:
  // the direct strided input gradient's phases together on a few images at a time; 15: the channels-last weight
  // gradient's panels of several runs by AVX2, the direct input gradients' weights packed channel by channel; 16:
  // the planar convolution's prefetches)
  constexpr const char* kKernelsRevision = "kernels-16,";
  uint32_t h = 2166136261u;  // FNV-1a
  const std::string revision = std::string(kKernelsRevision) + (conv_tuning().vector_im2col ? "" : "im2col-scalar,") +
                               (conv_tuning().direct_grad_split == 0
                                    ? ""
                                    : "direct-split-" + std::to_string(conv_tuning().direct_grad_split) + ",") +
                               (conv_tuning().direct_isa == 0
                                    ? ""
                                    : "direct-isa-" + std::to_string(conv_tuning().direct_isa) + ",") +
                               (conv_tuning().winograd_dw_split == 0
                                    ? ""
                                    : "winograd-dw-split-" + std::to_string(conv_tuning().winograd_dw_split) + ",");
  for (const char ch : revision) h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
  for (const Algo& a : cands)
    for (const char ch : algo_name(a) + ",") h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
  char tag[16];
  std::snprintf(tag, sizeof tag, " c=%08x", h);
  const std::string key = algo_key(pass, dtype, g) + tag;
  if (const auto known = conv_algo_lookup(key)) {
    for (const Algo& a : cands)
      if (algo_name(a) == *known) {
        run(a);
        return;
      }
  }
  if (cands.size() == 1) {
    conv_algo_store(key, algo_name(cands[0]));
    run(cands[0]);
    return;
  }
  auto timed = [&](const Algo& a) {
    const auto t0 = std::chrono::steady_clock::now();
    run(a);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  size_t best = 0, last = 0;
  double best_s = 0, heuristic_s = 0;
  std::vector<double> times(cands.size());
  for (size_t i = 0; i < cands.size(); ++i) {
    // the first run of each also pays for growing buffers (and their first page faults: Winograd's weight
    // gradient on 512 channels, 24 MB of fresh scratch, ran 2-3x its time), so a second one decides
    const double s = std::min(timed(cands[i]), timed(cands[i]));
    times[i] = s;
    last = i;
    if (i == 0 || s < best_s) best = i, best_s = s;
    if (i == 0) heuristic_s = s;
  }
  // The fixed rule stays unless another candidate beats it clearly: timed in isolation, one after another on
  // the same (warm) data, small differences do not survive inside a network's step (measured: choosing
  // 2-8% winners made the scratch CNN's training step 5% slower on a Zen 4). A winner is confirmed by timing
  // it and the fixed rule's choice twice more, alternately (best of three each), so that a slow spell of the
  // machine during one candidate's runs cannot decide. So is the runner-up among the others where it came within
  // the margin of the winner, and the faster of the two after that is the winner: ResNet18's 512x2x2 weight
  // gradient, Winograd 1.06x the direct convolution in isolation (and 1.13x inside the training step), had gone
  // to either, run by run (Zen 4 guest).
  if (best != 0 && best_s <= kSwitchMargin * heuristic_s) {
    size_t second = 0;
    for (size_t i = 1; i < cands.size(); ++i)
      if (i != best && (second == 0 || times[i] < times[second])) second = i;
    const bool close = second != 0 && best_s > kSwitchMargin * times[second];
    double second_s = close ? times[second] : 0;
    for (int r = 0; r < 2; ++r) {
      heuristic_s = std::min(heuristic_s, timed(cands[0]));
      best_s = std::min(best_s, timed(cands[best]));
      if (close) second_s = std::min(second_s, timed(cands[second]));
    }
    last = close ? second : best;
    if (close && second_s < best_s) best = second, best_s = second_s;
  }
  if (best != 0 && best_s > kSwitchMargin * heuristic_s) best = 0;
  conv_algo_store(key, algo_name(cands[best]));
  if (last != best) run(cands[best]);
}

// out = the epilogue (scale, shift, residual, relu; see Epilogue) of conv(x, w), in float32 or float64.
void conv2d_forward_affine_kernel(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& scale,
                                  const Tensor& shift, const Tensor& residual, bool relu, const Conv2dParams& g) {
  const bool low = low_precision(x, g);
  auto epilogue = [&]<typename T>(T*) {
    return Epilogue<T>{scale.defined() ? scale.data_ptr<T>() : nullptr, shift.defined() ? shift.data_ptr<T>() : nullptr,
                       residual.defined() ? residual.data_ptr<T>() : nullptr, relu};
  };
  choose_and_run(Pass::forward, x.dtype(), g, low, low ? 2 : x.element_size(), [&](const Algo& a) {
    if (a.kind == Algo::planar) {  // float32 (planar_possible)
      forward_planar(out.data_ptr<float>(), x.data_ptr<float>(), w.data_ptr<float>(),
                     epilogue(static_cast<float*>(nullptr)), g);
    } else if (a.kind == Algo::direct) {  // float32 tensors (direct_possible); g.gemm_dtype says how they multiply
      forward_direct(out.data_ptr<float>(), x.data_ptr<float>(), w.data_ptr<float>(),
                     epilogue(static_cast<float*>(nullptr)), g);
    } else if (a.kind == Algo::implicit) {
      const Epilogue<float> ep = epilogue(static_cast<float*>(nullptr));
      // the last wide row of the last plane reads up to (kw - 1) * dw values past it
      const uint16_t* xpad = rounded_bf16_padded(x, g, (g.kw - 1) * g.dilation[1] + 64, kLowX);
      forward_implicit(out.data_ptr<float>(), xpad, rounded_bf16(w, kLowW), ep.bias_only() ? ep.shift : nullptr, g);
      if (!ep.bias_only()) epilogue_in_place(out.data_ptr<float>(), g, ep);
    } else if (low) {
      forward_typed<float, uint16_t>(out.data_ptr<float>(), rounded_bf16(x, kLowX), rounded_bf16(w, kLowW),
                                     epilogue(static_cast<float*>(nullptr)), g, a);
    } else {
      DL_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
        forward_typed<scalar_t>(out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                epilogue(static_cast<scalar_t*>(nullptr)), g, a);
      });
    }
  });
}

void conv2d_forward_kernel(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                           const Conv2dParams& g) {
  conv2d_forward_affine_kernel(out, x, w, Tensor(), bias, Tensor(), false, g);
}

void conv2d_backward_input_kernel(const Tensor& gx, const Tensor& gout, const Tensor& w, const Conv2dParams& g) {
  const bool low = low_precision(gx, g);
  choose_and_run(Pass::input, gx.dtype(), g, low, gx.element_size(), [&](const Algo& a) {
    if (a.kind == Algo::direct) {  // the phases' direct convolutions
      backward_input_direct(gx.data_ptr<float>(), gout.data_ptr<float>(), w.data_ptr<float>(), g);
      return;
    }
    if (low) {
      backward_input_typed<float, uint16_t>(gx.data_ptr<float>(), rounded_bf16(gout, kLowX), rounded_bf16(w, kLowW),
                                            g, a);
      return;
    }
    DL_DISPATCH_FLOATING(gx.dtype(), "conv2d backward", [&] {
      backward_input_typed<scalar_t>(gx.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), g, a);
    });
  });
}

void conv2d_backward_weight_kernel(const Tensor& gw, const Tensor& gout, const Tensor& x, const Conv2dParams& g) {
  const bool low = low_precision(gw, g);
  choose_and_run(Pass::weight, gw.dtype(), g, low, low ? 2 : gw.element_size(), [&](const Algo& a) {
    if (a.kind == Algo::planar) {  // float32 (planar_possible)
      backward_weight_planar(gw.data_ptr<float>(), gout.data_ptr<float>(), x.data_ptr<float>(), g);
      return;
    }
    if (a.kind == Algo::direct) {  // float32 tensors (direct_possible), float32 or bfloat16 products
      direct_weight_grad(x.data_ptr<float>(), gout.data_ptr<float>(), g.N, direct_shape(g), gw.data_ptr<float>());
      return;
    }
    if (low) {
      backward_weight_typed<float, uint16_t>(gw.data_ptr<float>(), rounded_bf16(gout, kLowX), rounded_bf16(x, kLowW),
                                             g, a);
      return;
    }
    DL_DISPATCH_FLOATING(gw.dtype(), "conv2d backward", [&] {
      backward_weight_typed<scalar_t>(gw.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), g, a);
    });
  });
}

void conv2d_backward_bias_kernel(const Tensor& gb, const Tensor& gout) {
  const auto& s = gout.sizes();
  DL_DISPATCH_FLOATING(gb.dtype(), "conv2d backward", [&] {
    backward_bias_typed<scalar_t>(gb.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), s[0], s[1], s[2] * s[3]);
  });
}

}  // namespace

void register_conv_kernels(KernelTable& t) {
  t.conv2d_forward = conv2d_forward_kernel;
  t.conv2d_forward_affine = conv2d_forward_affine_kernel;
  t.conv2d_backward_input = conv2d_backward_input_kernel;
  t.conv2d_backward_weight = conv2d_backward_weight_kernel;
  t.conv2d_backward_bias = conv2d_backward_bias_kernel;
}

}  // namespace dl::cpu
