// Direct convolution on zero-padded channels-last copies (conv_direct.h): float32 FMAs or bfloat16 vdpbf16ps, and
// the weight gradient in both. Compiled with -mavx512f -mavx512bw -mavx512bf16; conv.cpp calls it only where CPUID has
// AVX-512F and BW, and the bfloat16 form only where it has AVX512_BF16.
#include "tensor/cpu/conv_direct.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tensor/cpu/avx512_transpose.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/omp_threads.h"
#include "tensor/cpu/scratch.h"
#include "tensor/half.h"

namespace dl::cpu {

namespace {

// Scratch slots (tensor/cpu/scratch.h) of this file; conv.cpp uses 0-9 and 13 (the packed weights).
enum Slot { kPadded = 10, kAcc = 11, kRows = 12, kPackF32 = 14, kGradX = 15, kGradOut = 16, kGradAcc = 17 };

// Blocks of output channels: ceil(O / 16) vectors dealt into blocks of at most 4 (a tile's width), as evenly
// as they go (6 vectors: 3 + 3, not 4 + 2).
struct Blocks {
  int n = 0;
  int nv[64];  // vectors per block (O up to 4096 channels)
  int64_t o0[64];
};
Blocks blocks_of(int64_t O) {
  const int64_t vecs = (O + 15) / 16;
  Blocks b;
  b.n = static_cast<int>((vecs + 3) / 4);
  int64_t o = 0;
  for (int j = 0; j < b.n; ++j) {
    b.nv[j] = static_cast<int>(vecs / b.n + (j < vecs % b.n ? 1 : 0));
    b.o0[j] = o;
    o += 16 * b.nv[j];
  }
  return b;
}

// Output positions per register tile for a tile NV vectors wide: 24 accumulators where they fit, and never
// more than 8 pointers (with the weights' pointer and the loop counters they stay in registers).
constexpr int mr_for(int nv) { return nv == 4 ? 6 : 8; }
constexpr int kMaxMr = 8;

// A register tile's accumulators, row m at c + m * ld: loaded (or zeroed) before the sums, stored after them.
template <int MR, int NV>
inline void load_tile(__m512 (&s)[MR][NV], const float* c, int64_t ld, bool load) {
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) s[m][v] = load ? _mm512_loadu_ps(c + m * ld + 16 * v) : _mm512_setzero_ps();
}
template <int MR, int NV>
inline void store_tile(const __m512 (&s)[MR][NV], float* c, int64_t ld) {
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + m * ld + 16 * v, s[m][v]);
}
// ... and with row m at c[m] (the rows of a tile whose positions are not consecutive).
template <int MR, int NV>
inline void load_tile(__m512 (&s)[MR][NV], float* const* c, bool load) {
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) s[m][v] = load ? _mm512_loadu_ps(c[m] + 16 * v) : _mm512_setzero_ps();
}
template <int MR, int NV>
inline void store_tile(const __m512 (&s)[MR][NV], float* const* c) {
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c[m] + 16 * v, s[m][v]);
}

// c[m][0, 16 NV) (+)= sum over runs t < nt, k < seg of a[m][off[t] + k] * b[woff[t] + k * 16 NV + ...].
template <int MR, int NV>
void tile(const float* const* a, int64_t nt, const int64_t* off, const int64_t* woff, int64_t seg, const float* b,
          float* const* c, bool accumulate) {
  __m512 s[MR][NV];
  load_tile(s, c, accumulate);
  for (int64_t t = 0; t < nt; ++t) {
    const float* ap[MR];
    for (int m = 0; m < MR; ++m) ap[m] = a[m] + off[t];
    const float* bp = b + woff[t];
    for (int64_t k = 0; k < seg; ++k, bp += 16 * NV) {
      __m512 bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(bp + 16 * v);
      for (int m = 0; m < MR; ++m) {
        const __m512 av = _mm512_set1_ps(ap[m][k]);
        for (int v = 0; v < NV; ++v) s[m][v] = _mm512_fmadd_ps(av, bv[v], s[m][v]);
      }
    }
  }
  store_tile(s, c);
}

// The same on bfloat16 operands with vdpbf16ps: k runs in pairs (seg even), a pair of a broadcast as one 32-bit
// value, b holding for each pair and output channel the two values side by side.
template <int MR, int NV>
void tile(const uint16_t* const* a, int64_t nt, const int64_t* off, const int64_t* woff, int64_t seg,
          const uint16_t* b, float* const* c, bool accumulate) {
  __m512 s[MR][NV];
  load_tile(s, c, accumulate);
  for (int64_t t = 0; t < nt; ++t) {
    const uint16_t* ap[MR];
    for (int m = 0; m < MR; ++m) ap[m] = a[m] + off[t];
    const uint16_t* bp = b + woff[t];
    for (int64_t k = 0; k < seg; k += 2, bp += 32 * NV) {
      __m512bh bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(bp + 32 * v));
      for (int m = 0; m < MR; ++m) {
        int32_t pair;
        std::memcpy(&pair, ap[m] + k, sizeof pair);
        const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
        for (int v = 0; v < NV; ++v) s[m][v] = _mm512_dpbf16_ps(s[m][v], av, bv[v]);
      }
    }
  }
  store_tile(s, c);
}

template <typename E>
using TileFn = void (*)(const E* const*, int64_t, const int64_t*, const int64_t*, int64_t, const E*, float* const*,
                        bool);
template <typename E>
TileFn<E> tile_for(int nv) {
  switch (nv) {
    case 1: return tile<mr_for(1), 1>;
    case 2: return tile<mr_for(2), 2>;
    case 3: return tile<mr_for(3), 3>;
    default: return tile<mr_for(4), 4>;
  }
}

// Channels of the channels-last copy: C, rounded up to even for bfloat16 (a zero channel), so that pairs of k
// never straddle two taps.
int64_t copy_channels(const DirectConvShape& s) { return s.bf16 ? (s.C + 1) / 2 * 2 : s.C; }

// 16 floats -> 16 bfloat16 (round to nearest even, as float_to_bfloat16).
inline void store_row(float* d, __m512 v) { _mm512_storeu_ps(d, v); }
inline void store_row(uint16_t* d, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
}
inline void store_one(float* d, float v) { *d = v; }
inline void store_one(uint16_t* d, float v) { *d = half_detail::float_to_bf16_bits(v); }

// The b images at x (NCHW) -> xp (b, H + 2 ph, W + 2 pw, Cp), zero borders (and zero channels past C).
template <typename E>
void to_padded_nhwc(const float* x, int64_t b, const DirectConvShape& s, E* xp) {
  const int64_t C = s.C, Cp = copy_channels(s), H = s.H, W = s.W, HW = H * W, Hp = H + 2 * s.ph,
                Wp = W + 2 * s.pw;
  for (int64_t i = 0; i < b; ++i) {
    E* d = xp + i * Hp * Wp * Cp;
    const float* src = x + i * C * HW;
    std::memset(d, 0, sizeof(E) * static_cast<size_t>(s.ph * Wp * Cp));
    std::memset(d + (s.ph + H) * Wp * Cp, 0, sizeof(E) * static_cast<size_t>(s.ph * Wp * Cp));
    for (int64_t h = 0; h < H; ++h) {
      E* row = d + (h + s.ph) * Wp * Cp;
      std::memset(row, 0, sizeof(E) * static_cast<size_t>(s.pw * Cp));
      std::memset(row + (s.pw + W) * Cp, 0, sizeof(E) * static_cast<size_t>(s.pw * Cp));
      row += s.pw * Cp;
      const float* sr = src + h * W;
      int64_t c0 = 0;
      for (; c0 + 16 <= C; c0 += 16) {
        for (int64_t w0 = 0; w0 < W; w0 += 16) {
          const int64_t wn = std::min<int64_t>(16, W - w0);
          const __mmask16 m = static_cast<__mmask16>((1u << wn) - 1);
          __m512 r[16];
          for (int j = 0; j < 16; ++j) r[j] = _mm512_maskz_loadu_ps(m, sr + (c0 + j) * HW + w0);
          detail::transpose16(r);
          for (int64_t j = 0; j < wn; ++j) store_row(row + (w0 + j) * Cp + c0, r[j]);
        }
      }
      for (; c0 < Cp; ++c0)
        for (int64_t w = 0; w < W; ++w) store_one(row + w * Cp + c0, c0 < C ? sr[c0 * HW + w] : 0.0f);
    }
  }
}

// rows[o * ld + l] = acc[l * lda + o] for o < on, l < len.
void transpose_out(const float* acc, int64_t lda, int64_t len, int64_t on, float* rows, int64_t ld) {
  int64_t l0 = 0;
  for (; l0 + 16 <= len; l0 += 16) {
    for (int64_t o0 = 0; o0 < on; o0 += 16) {
      __m512 r[16];
      for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(acc + (l0 + j) * lda + o0);
      detail::transpose16(r);
      const int64_t n = std::min<int64_t>(16, on - o0);
      for (int64_t j = 0; j < n; ++j) _mm512_storeu_ps(rows + (o0 + j) * ld + l0, r[j]);
    }
  }
  for (int64_t o = 0; o < on; ++o)
    for (int64_t l = l0; l < len; ++l) rows[o * ld + l] = acc[l * lda + o];
}

// Input channels per pass: all of them while a block's weights for the pass take at most ~320 KB (a third of
// a Zen 4 L2); else passes of 16k channels under that. A pass over all channels runs each kernel row as one
// run of kw * Cp consecutive values; a pass over some channels runs each tap as a run of its channels.
int64_t channels_per_pass(const DirectConvShape& s) {
  const int64_t budget = int64_t{320} << 10, per_channel = s.kh * s.kw * 64 * (s.bf16 ? 2 : 4);
  const int64_t Cp = copy_channels(s);
  if (Cp * per_channel <= budget) return Cp;
  return std::max<int64_t>(16, budget / per_channel / 16 * 16);
}

// The float32 packing of one block's pass (see direct_pack_weights) into d: d[(t * cc + c) * nb + q] = w of output
// channel o0 + q, input channel c0 + c, tap t; zero past O (and past C: the bfloat16 copy's even channel count).
// w is the matrix (O, K) with k = c * taps + t, so a pass's k form one range: blocks of 16 output channels x 16 k
// are transposed in registers, each resulting vector (one k, 16 channels) stored where its (tap, channel) goes.
void pack_pass(const float* w, const DirectConvShape& s, int64_t o0, int64_t nb, int64_t c0, int64_t cc, float* d) {
  const int64_t taps = s.kh * s.kw, K = s.C * taps, kb = c0 * taps, ke = std::min(c0 + cc, s.C) * taps;
  if (c0 + cc > s.C) std::fill(d, d + taps * cc * nb, 0.0f);  // the zero channel
  for (int64_t q0 = 0; q0 < nb; q0 += 16)
    for (int64_t k0 = kb; k0 < ke; k0 += 16) {
      const int64_t kn = std::min<int64_t>(16, ke - k0);
      const __mmask16 m = static_cast<__mmask16>((1u << kn) - 1);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t o = o0 + q0 + i;
        r[i] = o < s.O ? _mm512_maskz_loadu_ps(m, w + o * K + k0) : _mm512_setzero_ps();
      }
      detail::transpose16(r);
      for (int64_t i = 0; i < kn; ++i) {
        const int64_t k = k0 + i - kb, c = k / taps, t = k % taps;
        _mm512_storeu_ps(d + (t * cc + c) * nb + q0, r[i]);
      }
    }
}

// The same from the weights of the layer whose input gradient this convolution computes (direct_pack_weights'
// flipped): output channel o here is that layer's input channel, input channel c its output channel, tap t its
// tap taps - 1 - t, so w is (C, O, kh, kw) in this shape's names. For each input channel, 16 output channels' taps
// are 16 consecutive runs of taps values: transposed in registers, 16 taps at a time.
void pack_pass_flipped(const float* w, const DirectConvShape& s, int64_t o0, int64_t nb, int64_t c0, int64_t cc,
                       float* d) {
  const int64_t taps = s.kh * s.kw, ce = std::min(c0 + cc, s.C);
  if (c0 + cc > s.C) std::fill(d, d + taps * cc * nb, 0.0f);  // the zero channel
  for (int64_t q0 = 0; q0 < nb; q0 += 16)
    for (int64_t c = c0; c < ce; ++c)
      for (int64_t t0 = 0; t0 < taps; t0 += 16) {
        const int64_t tn = std::min<int64_t>(16, taps - t0);
        const __mmask16 m = static_cast<__mmask16>((1u << tn) - 1);
        __m512 r[16];
        for (int i = 0; i < 16; ++i) {
          const int64_t o = o0 + q0 + i;
          r[i] = o < s.O ? _mm512_maskz_loadu_ps(m, w + (c * s.O + o) * taps + t0) : _mm512_setzero_ps();
        }
        detail::transpose16(r);
        for (int64_t i = 0; i < tn; ++i) _mm512_storeu_ps(d + ((taps - 1 - t0 - i) * cc + c - c0) * nb + q0, r[i]);
      }
}

// Word j of 32 bfloat16 values made from lo and hi: (lo[j], hi[j]) (vdpbf16ps's pairs).
inline __m512i interleave_bf16(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
}

// Rows 2p and 2p + 1 of the float32 pass (nb wide) -> bfloat16 pairs: d[(p * nb + q) * 2 + {0, 1}].
void pair_rows(const float* f, int64_t rows, int64_t nb, uint16_t* d) {
  for (int64_t p = 0; p < rows / 2; ++p)
    for (int64_t q = 0; q < nb; q += 16) {
      const __m512 lo = _mm512_loadu_ps(f + 2 * p * nb + q), hi = _mm512_loadu_ps(f + (2 * p + 1) * nb + q);
      _mm512_storeu_si512(d + (p * nb + q) * 2, interleave_bf16(lo, hi));
    }
}

// The kernel rows [r0, r1) (or columns) that output row (column) o of a plane of n input rows reads inside the
// image, not in the zero padding: ih = o * stride - pad + r in [0, n).
struct TapRange {
  int64_t lo, hi;
  bool operator==(const TapRange&) const = default;
};
TapRange taps_inside(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t n) {
  const int64_t top = o * stride - pad;
  return {std::clamp<int64_t>(-top, 0, k), std::clamp<int64_t>(n - top, 0, k)};
}

// Padding classes of the output positions: positions whose kernel windows cover the same rows and columns of the
// image. conv_images sorts a chunk's positions by class and runs each register tile over the union of its
// positions' ranges only, so (nearly) all products with the zero padding are skipped; they would add exact zeros.
// They are 5 of 9 taps on ResNet18's 2x2 planes, 3 of 16 on average on 4x4 planes, under 4% on 56x56 ones.
// row_class[oh] * cols.size() + col_class[ow] is a position's class.
struct PadClasses {
  std::vector<TapRange> rows, cols;         // the distinct ranges
  std::vector<int32_t> row_class, col_class;  // per output row / column: its range's index
  int64_t count() const { return static_cast<int64_t>(rows.size() * cols.size()); }
  int32_t of(int64_t row, int64_t col) const {
    return row_class[static_cast<size_t>(row)] * static_cast<int32_t>(cols.size()) +
           col_class[static_cast<size_t>(col)];
  }
  TapRange row_range(int64_t c) const { return rows[static_cast<size_t>(c) / cols.size()]; }
  TapRange col_range(int64_t c) const { return cols[static_cast<size_t>(c) % cols.size()]; }
  // Counting sort (stable) of n items of classes cls[0, n): place(i, at) gets item i's slot in class order, and
  // start[c] (count() + 2 entries) where class c starts (start[count()] = n).
  template <typename Place>
  void sort(const int32_t* cls, int64_t n, int32_t* start, Place&& place) const {
    const int64_t nc = count();
    std::fill(start, start + nc + 2, 0);
    for (int64_t i = 0; i < n; ++i) ++start[cls[i] + 2];
    for (int64_t c = 0; c < nc; ++c) start[c + 2] += start[c + 1];
    for (int64_t i = 0; i < n; ++i) place(i, start[cls[i] + 1]++);  // start[c + 1] ends as class c's end
  }
};
// pairs: the classes of the bfloat16 weight gradient's units, pairs of neighbouring positions of a row (column j:
// positions 2j and 2j + 1, the union of their ranges).
PadClasses pad_classes(const DirectConvShape& s, bool pairs = false) {
  PadClasses pc;
  const auto index = [](std::vector<TapRange>& v, TapRange r) {
    const auto it = std::find(v.begin(), v.end(), r);
    if (it != v.end()) return static_cast<int32_t>(it - v.begin());
    v.push_back(r);
    return static_cast<int32_t>(v.size() - 1);
  };
  for (int64_t oh = 0; oh < s.Ho; ++oh) pc.row_class.push_back(index(pc.rows, taps_inside(oh, s.sh, s.ph, s.kh, s.H)));
  const int64_t step = pairs ? 2 : 1;
  for (int64_t ow = 0; ow < s.Wo; ow += step) {
    TapRange r = taps_inside(ow, s.sw, s.pw, s.kw, s.W);
    if (pairs && ow + 1 < s.Wo) {
      const TapRange r1 = taps_inside(ow + 1, s.sw, s.pw, s.kw, s.W);
      r = {std::min(r.lo, r1.lo), std::max(r.hi, r1.hi)};
    }
    pc.col_class.push_back(index(pc.cols, r));
  }
  return pc;
}

// All positions in one class (the whole kernel).
PadClasses one_class(const DirectConvShape& s, bool pairs = false) {
  PadClasses pc;
  pc.rows = {{0, s.kh}};
  pc.cols = {{0, s.kw}};
  pc.row_class.assign(static_cast<size_t>(s.Ho), 0);
  pc.col_class.assign(static_cast<size_t>(pairs ? (s.Wo + 1) / 2 : s.Wo), 0);
  return pc;
}

// The share of the products that the classes skip (those with the zero padding; for pairs of positions, those
// where both are in it).
double skipped_share(const PadClasses& pc, const DirectConvShape& s) {
  double rows = 0, cols = 0;
  const auto size = [](const TapRange& r) { return static_cast<double>(r.hi - r.lo); };
  for (const int32_t c : pc.row_class) rows += size(pc.rows[static_cast<size_t>(c)]);
  for (const int32_t c : pc.col_class) cols += size(pc.cols[static_cast<size_t>(c)]);
  return 1.0 - rows / static_cast<double>(pc.row_class.size() * s.kh) * cols /
                   static_cast<double>(pc.col_class.size() * s.kw);
}

template <typename E>
void conv_images(const float* x, int64_t n, const E* wp, const DirectConvShape& s, const DirectStore& store,
                 int part, int parts) {
  const int64_t Cp = copy_channels(s), L = s.Ho * s.Wo, Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw,
                image = Hp * Wp * Cp;
  const int64_t rs = Wp * Cp, K = s.kh * s.kw * Cp, cp = channels_per_pass(s);
  const PadClasses pc = pad_classes(s);
  // a tile's runs in a pass: their offsets in the copy and in the block's weights
  std::vector<int64_t> off_(static_cast<size_t>(2 * s.kh * s.kw));
  int64_t* off = off_.data();
  int64_t* woff = off + s.kh * s.kw;
  const Blocks bl = blocks_of(s.O);
  // positions per chunk: the accumulators of a block (chunk x 64 floats) stay in L2
  constexpr int64_t kChunk = 512;
  // images per group: enough for a chunk when the planes are small
  const int64_t group = std::max<int64_t>(1, std::min<int64_t>(n, kChunk / std::max<int64_t>(L, 1)));
  E* xp = thread_scratch<E>(kPadded, static_cast<size_t>(group * image));
  float* acc = thread_scratch<float>(kAcc, static_cast<size_t>(kChunk * 64));  // (p, ldc): a block's sums
  // the rows handed to store; then the chunk's positions in class order (their copy pointers, indices and
  // classes), each position's class, and where each class starts
  float* rows = thread_scratch<float>(
      kRows, static_cast<size_t>(64 * kChunk + kChunk * sizeof(void*) / sizeof(float) + 3 * kChunk + pc.count() + 2));
  const E** base = reinterpret_cast<const E**>(rows + 64 * kChunk);
  int32_t* index = reinterpret_cast<int32_t*>(base + kChunk);
  int32_t* sorted = index + kChunk;
  int32_t* cls = sorted + kChunk;
  int32_t* start = cls + kChunk;
  // this part's positions [q0, q1) of all n * L; the images it touches are copied (by every part touching them)
  const int64_t q0 = n * L * part / parts, q1 = n * L * (part + 1) / parts;
  for (int64_t n0 = q0 / L / group * group; n0 * L < q1; n0 += group) {
    const int64_t b = std::min(group, n - n0), P = std::min(b * L, q1 - n0 * L);
    to_padded_nhwc(x + n0 * s.C * s.H * s.W, b, s, xp);
    for (int64_t p0 = std::max<int64_t>(0, q0 - n0 * L); p0 < P; p0 += kChunk) {
      const int64_t pn = std::min(kChunk, P - p0);
      // the chunk's positions sorted by class
      for (int64_t p = 0; p < pn; ++p) cls[p] = pc.of((p0 + p) % L / s.Wo, (p0 + p) % L % s.Wo);
      pc.sort(cls, pn, start, [&](int64_t p, int64_t at) {
        const int64_t q = p0 + p, i = q / L, l = q % L, oh = l / s.Wo, ow = l % s.Wo;
        base[at] = xp + i * image + (oh * s.sh * Wp + ow * s.sw) * Cp;
        index[at] = static_cast<int32_t>(p);
        sorted[at] = cls[p];
      });
      for (int j = 0; j < bl.n; ++j) {
        const int nv = bl.nv[j], mr = mr_for(nv);
        const int64_t ldc = 16 * nv;
        const TileFn<E> fn = tile_for<E>(nv);
        const E* wb = wp + bl.o0[j] * K;
        for (int64_t c0 = 0; c0 < Cp; c0 += cp) {
          const int64_t cc = std::min(cp, Cp - c0);
          const E* wc = wb + c0 * s.kh * s.kw * ldc;
          TapRange rr{-1, -1}, cr{-1, -1};  // the ranges the runs below were made for
          int64_t nt = 0, seg = 0;
          for (int64_t p = 0; p < pn; p += mr) {
            const E* a[kMaxMr];
            float* rc[kMaxMr];
            TapRange tr{s.kh, 0}, tc{s.kw, 0};  // the tile's: the union of its positions' ranges
            for (int m = 0; m < mr; ++m) {  // a short last tile repeats its last position (same sums, same row)
              const int64_t at = std::min(p + m, pn - 1);
              a[m] = base[at];
              rc[m] = acc + index[at] * ldc;
              const TapRange pr = pc.row_range(sorted[at]), pw = pc.col_range(sorted[at]);
              tr = {std::min(tr.lo, pr.lo), std::max(tr.hi, pr.hi)};
              tc = {std::min(tc.lo, pw.lo), std::max(tc.hi, pw.hi)};
            }
            if (!(tr == rr && tc == cr)) {
              rr = tr, cr = tc, nt = 0;
              if (cc == Cp) {  // each kernel row: its columns inside the image, (hi - lo) * Cp consecutive values
                seg = (cr.hi - cr.lo) * Cp;
                for (int64_t r = rr.lo; r < rr.hi && seg > 0; ++r, ++nt) {
                  off[nt] = r * rs + cr.lo * Cp;
                  woff[nt] = (r * s.kw + cr.lo) * Cp * ldc;
                }
              } else {  // each tap inside the image: the pass's channels
                seg = cc;
                for (int64_t r = rr.lo; r < rr.hi; ++r)
                  for (int64_t t = r * s.kw + cr.lo; t < r * s.kw + cr.hi; ++t, ++nt) {
                    off[nt] = r * rs + t % s.kw * Cp + c0;
                    woff[nt] = t * cc * ldc;
                  }
              }
            }
            fn(a, nt, off, woff, seg, wc, rc, c0 > 0);
          }
        }
        // hand the block over image by image
        const int64_t on = std::min<int64_t>(ldc, s.O - bl.o0[j]);
        for (int64_t p = 0; p < pn;) {
          const int64_t q = p0 + p, i = q / L, l = q % L, len = std::min(pn - p, L - l);
          transpose_out(acc + p * ldc, ldc, len, on, rows, len);
          store(n0 + i, l, len, bl.o0[j], on, rows, len);
          p += len;
        }
      }
    }
  }
}

// ---- weight gradient ---------------------------------------------------------------------------------------
// acc[m][0, 16 NV) (+)= sum over positions p < np of a[p][off + m] * d[p * ldd + 0, 16 NV): MR consecutive values
// of one kernel row's run (input channels, across taps) against NV vectors of the output gradient's channels.
template <int MR, int NV>
void grad_tile(const float* const* a, int64_t np, int64_t off, const float* d, int64_t ldd, float* acc, bool first) {
  __m512 s[MR][NV];
  load_tile(s, acc, 16 * NV, !first);
  for (int64_t p = 0; p < np; ++p, d += ldd) {
    const float* ap = a[p] + off;
    __m512 dv[NV];
    for (int v = 0; v < NV; ++v) dv[v] = _mm512_loadu_ps(d + 16 * v);
    for (int m = 0; m < MR; ++m) {
      const __m512 av = _mm512_set1_ps(ap[m]);
      for (int v = 0; v < NV; ++v) s[m][v] = _mm512_fmadd_ps(av, dv[v], s[m][v]);
    }
  }
  store_tile(s, acc, 16 * NV);
}

// The same in bfloat16 (vdpbf16ps): the reduction runs over pairs of positions, a[p] and d hold 32-bit words, each
// the two positions' values (a[p][off + m]: input value m of the run under both; d: the output gradient's).
template <int MR, int NV>
void grad_tile(const uint32_t* const* a, int64_t np, int64_t off, const uint32_t* d, int64_t ldd, float* acc,
               bool first) {
  __m512 s[MR][NV];
  load_tile(s, acc, 16 * NV, !first);
  for (int64_t p = 0; p < np; ++p, d += ldd) {
    const uint32_t* ap = a[p] + off;
    __m512bh dv[NV];
    for (int v = 0; v < NV; ++v) dv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(d + 16 * v));
    for (int m = 0; m < MR; ++m) {
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(ap[m])));
      for (int v = 0; v < NV; ++v) s[m][v] = _mm512_dpbf16_ps(s[m][v], av, dv[v]);
    }
  }
  store_tile(s, acc, 16 * NV);
}

template <typename W>
using GradTileFn = void (*)(const W* const*, int64_t, int64_t, const W*, int64_t, float*, bool);
template <typename W>
GradTileFn<W> grad_tile_for(int nv) {
  switch (nv) {
    case 1: return grad_tile<mr_for(1), 1>;
    case 2: return grad_tile<mr_for(2), 2>;
    case 3: return grad_tile<mr_for(3), 3>;
    default: return grad_tile<mr_for(4), 4>;
  }
}

// bfloat16 weight gradient: one image x (C, H, W) -> y[h][w][c] = the word (xp[h][w][c], xp[h][w + sw][c]) (0 past
// the row) of its zero-padded channels-last form xp, rounded to bfloat16: the input under two neighbouring output
// positions of a row. Straight from x: for each row and 16 channels, the row's columns are transposed into a small
// buffer (zero borders; the thread's scratch slot 10), then paired.
void pair_columns(const float* x, const DirectConvShape& s, uint32_t* y) {
  const int64_t C = s.C, H = s.H, W = s.W, HW = H * W, Wp = W + 2 * s.pw;
  float* col = thread_scratch<float>(kPadded, static_cast<size_t>(Wp * 16));
  std::memset(y, 0, sizeof(uint32_t) * static_cast<size_t>(s.ph * Wp * C));
  std::memset(y + (s.ph + H) * Wp * C, 0, sizeof(uint32_t) * static_cast<size_t>(s.ph * Wp * C));
  std::memset(col, 0, sizeof(float) * static_cast<size_t>(s.pw * 16));
  std::memset(col + (s.pw + W) * 16, 0, sizeof(float) * static_cast<size_t>(s.pw * 16));
  for (int64_t h = 0; h < H; ++h) {
    uint32_t* yr = y + (h + s.ph) * Wp * C;
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t cn = std::min<int64_t>(16, C - c0);
      for (int64_t w0 = 0; w0 < W; w0 += 16) {
        const int64_t wn = std::min<int64_t>(16, W - w0);
        const __mmask16 m = static_cast<__mmask16>((1u << wn) - 1);
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = i < cn ? _mm512_maskz_loadu_ps(m, x + (c0 + i) * HW + h * W + w0) : _mm512_setzero_ps();
        detail::transpose16(r);
        for (int64_t j = 0; j < wn; ++j) _mm512_storeu_ps(col + (s.pw + w0 + j) * 16, r[j]);
      }
      const __mmask16 cm = static_cast<__mmask16>((1u << cn) - 1);
      for (int64_t w = 0; w < Wp; ++w) {
        const __m512 lo = _mm512_loadu_ps(col + w * 16);
        const __m512 hi = w + s.sw < Wp ? _mm512_loadu_ps(col + (w + s.sw) * 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(yr + w * C + c0, cm, interleave_bf16(lo, hi));
      }
    }
  }
}

// ... and the output gradient of one image (O, Ho, Wo) -> d[u * O + o] = the word (g[o][oh][2j], g[o][oh][2j + 1])
// (0 past the row) for the pairs u = oh * ceil(Wo / 2) + j: 16 x 16 blocks of words transposed in registers.
void pair_positions(const float* g, const DirectConvShape& s, uint32_t* d) {
  const int64_t O = s.O, Wo = s.Wo, U = (Wo + 1) / 2;
  for (int64_t oh = 0; oh < s.Ho; ++oh)
    for (int64_t o0 = 0; o0 < O; o0 += 16) {
      const int64_t on = std::min<int64_t>(16, O - o0);
      for (int64_t j0 = 0; j0 < U; j0 += 16) {
        const int64_t w0 = 2 * j0, n0 = std::clamp<int64_t>(Wo - w0, 0, 16),
                      n1 = std::clamp<int64_t>(Wo - w0 - 16, 0, 16);
        __m512i r[16];
        for (int i = 0; i < 16; ++i) {
          if (i >= on) {
            r[i] = _mm512_setzero_si512();
            continue;
          }
          const float* row = g + ((o0 + i) * s.Ho + oh) * Wo + w0;
          const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n0) - 1), row);
          const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n1) - 1), row + 16);
          r[i] = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));  // word j: positions w0 + 2j, + 1
        }
        detail::transpose16(r);
        for (int64_t j = 0; j < std::min<int64_t>(16, U - j0); ++j)
          _mm512_mask_storeu_epi32(d + (oh * U + j0 + j) * O + o0, static_cast<__mmask16>((1u << on) - 1), r[j]);
      }
    }
}

}  // namespace

size_t direct_packed_weights_bytes(const DirectConvShape& s) {
  return static_cast<size_t>((s.O + 15) / 16 * 16 * copy_channels(s) * s.kh * s.kw) * (s.bf16 ? 2 : 4);
}

void direct_pack_weights(const float* w, const DirectConvShape& s, void* wp, bool flipped) {
  const Blocks bl = blocks_of(s.O);
  const int64_t taps = s.kh * s.kw, Cp = copy_channels(s), K = Cp * taps, cp = channels_per_pass(s);
#pragma omp parallel for schedule(static) if (s.O * K > (int64_t{1} << 16))
  for (int j = 0; j < bl.n; ++j) {
    const int64_t nb = 16 * bl.nv[j];
    for (int64_t c0 = 0; c0 < Cp; c0 += cp) {
      const int64_t cc = std::min(cp, Cp - c0), at = bl.o0[j] * K + c0 * taps * nb;
      const auto pack = flipped ? pack_pass_flipped : pack_pass;
      if (!s.bf16) {
        pack(w, s, bl.o0[j], nb, c0, cc, static_cast<float*>(wp) + at);
        continue;
      }
      // a pass in float32 on this thread's scratch, then its rows in pairs (cc is even, so pairs stay in a tap)
      float* f = thread_scratch<float>(kPackF32, static_cast<size_t>(taps * cc * nb));
      pack(w, s, bl.o0[j], nb, c0, cc, f);
      pair_rows(f, taps * cc, nb, static_cast<uint16_t*>(wp) + at);
    }
  }
}

void direct_conv_images(const float* x, int64_t n, const void* wp, const DirectConvShape& s,
                        const DirectStore& store, int part, int parts) {
  if (s.bf16)
    conv_images(x, n, static_cast<const uint16_t*>(wp), s, store, part, parts);
  else
    conv_images(x, n, static_cast<const float*>(wp), s, store, part, parts);
}

namespace {

// The weight gradient over reduction units: float32, every output position; bfloat16, pairs of neighbouring
// positions of a row (ceil(Wo / 2) a row; an odd row's last pairs with zeros). W: float, or the pairs' words.
//
// Each image is copied once: the input channels-last and zero-padded (bfloat16: its column pairs; a few values of
// slack: the last tile of a kernel row reads up to 7 values past its run), the output gradient as (unit, O) (the
// last block's vectors may read up to 15 values past the last unit: slack, unused). Then register tiles of the
// gradient (grad_tile) sum over the units. The threads split the work one of two ways:
// - by tiles (large layers): all images are copied first into buffers shared by the threads, then each thread
//   sums its share of the tiles over every unit;
// - by images (layers whose tiles all fit in a core's L2, and at least an image a thread): each thread copies and
//   sums only its own images, a few at a time into buffers that stay in its cache, over every tile, and the
//   threads' partial sums are added at the end. No copy crosses cores and none goes to memory and back.
// Measured on a Zen 4 (L2 1 MiB), ResNet18's and the scratch CNN's layers: split by tiles, the copies took 15-30%
// of the time on the 64-channel layers; split by images, those layers ran 1.04-1.37x faster (float32 and
// bfloat16), the 128-channel ones 1.0-1.08x, while layers of 256 channels and more ran 0.45-0.92x (their tiles
// no longer fit in L2).
// Where a tenth or more of the products are with the zero padding (ResNet18's planes of 8x8 and smaller at 64x64,
// the scratch CNN's 7x7 and 3x3), a chunk's units are sorted by padding class (PadClasses) and each tile sums
// only the runs of classes whose windows reach its kernel row and columns inside the image. Measured on a Zen 4
// against summing everything, float32: 512x2x2 1.65x, 256x4x4 1.30x, 256x3x3 1.12x, 96x7x7 1.27x; bfloat16 (whose
// pairs of positions skip less): 1.05-1.44x on those layers.
template <typename W>
void weight_grad(const float* x, const float* gout, int64_t n, const DirectConvShape& s, float* gw) {
  constexpr bool kPairs = std::is_same_v<W, uint32_t>;
  const int64_t C = s.C, L = s.Ho * s.Wo, Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw, image = Hp * Wp * C;
  const int64_t seg = s.kw * C, rs = Wp * C, taps = s.kh * s.kw;
  const int64_t row_units = kPairs ? (s.Wo + 1) / 2 : s.Wo, units = row_units * s.Ho;
  if (n * units == 0) {
    std::fill(gw, gw + s.O * C * taps, 0.0f);
    return;
  }
  const DirectConvShape ds{s.O, s.Ho, s.Wo, s.O, 1, 1, 1, 1, 0, 0, s.Ho, s.Wo, false};  // gout as an image
  const Blocks bl = blocks_of(s.O);
  struct Item {
    int j;
    int64_t r, k0;
  };
  std::vector<Item> items;  // one tile of the gradient: block j of output channels, kernel row r, run values k0...
  for (int j = 0; j < bl.n; ++j)
    for (int64_t r = 0; r < s.kh; ++r)
      for (int64_t k0 = 0; k0 < seg; k0 += mr_for(bl.nv[j])) items.push_back({j, r, k0});
  const int64_t n_items = static_cast<int64_t>(items.size()), tile_floats = kMaxMr * 64;
  // units per chunk: the chunk's output gradient and input rows stay in L2 (measured on a Zen 4: 64-1024
  // positions ran within the noise of each other, 32 slower)
  const int64_t chunk = std::clamp<int64_t>((int64_t{512} << 10) / ((C * s.sh * s.sw + s.O) * 4), 32, 256);
  const int max_t = max_threads();
  const bool by_images = direct_weight_grad_by_images(s, n);

  // image i of the batch -> xw, dw (the copies described above)
  auto copy = [&](int64_t i, W* xw, W* dw) {
    if constexpr (kPairs) {
      pair_columns(x + i * C * s.H * s.W, s, xw);
      pair_positions(gout + i * s.O * L, s, dw);
    } else {
      to_padded_nhwc(x + i * C * s.H * s.W, 1, s, xw);
      to_padded_nhwc(gout + i * s.O * L, 1, ds, dw);
    }
  };
  // The units' padding classes (see PadClasses): a chunk's units are sorted by class, and a tile sums only the
  // classes whose kernel windows reach its kernel row and columns inside the image (the others would add products
  // with the zero padding).
  // Where under a tenth of the products are skipped (planes of 16x16 and more), one class: there the sorted order
  // and the shorter runs cost more than the skipped products (measured on a Zen 4).
  PadClasses pc = pad_classes(s, kPairs);
  if (skipped_share(pc, s) < kMinSkippedShare) pc = one_class(s, kPairs);
  const int64_t nclasses = pc.count();
  // tiles it0..it1 (acc: tile_floats each) += sums over the nu_all units of the images copied at xw, dw
  auto sum = [&](const W* xw, const W* dw, int64_t nu_all, int64_t it0, int64_t it1, float* acc, bool first) {
    // per unit of the chunk in class order: its input pointer; each unit's class; where the classes start; and
    // (more than one class) the chunk's output gradient rows in class order
    const W** base = reinterpret_cast<const W**>(
        thread_scratch<uint8_t>(kRows, static_cast<size_t>(chunk * (sizeof(void*) + 4) + 4 * (nclasses + 2))));
    int32_t* cls = reinterpret_cast<int32_t*>(base + chunk);
    int32_t* start = cls + chunk;
    W* dsorted = nclasses > 1 ? thread_scratch<W>(kAcc, static_cast<size_t>(chunk * s.O + 16)) : nullptr;
    for (int64_t u0 = 0; u0 < nu_all; u0 += chunk) {
      const int64_t nu = std::min(chunk, nu_all - u0);
      const W* d = nclasses > 1 ? dsorted : dw + u0 * s.O;
      for (int64_t u = 0; u < nu; ++u) cls[u] = pc.of((u0 + u) % units / row_units, (u0 + u) % row_units);
      pc.sort(cls, nu, start, [&](int64_t u, int64_t at) {
        const int64_t q = u0 + u, i = q / units, oh = q % units / row_units, ow = q % row_units * (kPairs ? 2 : 1);
        base[at] = xw + i * image + (oh * s.sh * Wp + ow * s.sw) * C;
        if (nclasses > 1) std::memcpy(dsorted + at * s.O, dw + q * s.O, sizeof(W) * static_cast<size_t>(s.O));
      });
      const bool fresh = first && u0 == 0;
      for (int64_t it = it0; it < it1; ++it) {
        const Item& t = items[static_cast<size_t>(it)];
        // the kernel columns of the tile's run values [k0, k0 + mr)
        const int64_t col0 = t.k0 / C, col1 = (std::min(t.k0 + mr_for(bl.nv[t.j]), seg) - 1) / C;
        float* a = acc + (it - it0) * tile_floats;
        bool started = false;
        for (int64_t c = 0, g0 = 0; c <= nclasses; ++c) {  // each run of consecutive classes that reach the tile
          const bool reach = c < nclasses && [&] {
            const TapRange rr = pc.row_range(c), cr = pc.col_range(c);
            return t.r >= rr.lo && t.r < rr.hi && col1 >= cr.lo && col0 < cr.hi;
          }();
          if (reach) continue;
          const int64_t g1 = start[c];  // the run [g0, g1) ends before class c
          if (g1 > g0) {
            grad_tile_for<W>(bl.nv[t.j])(base + g0, g1 - g0, t.r * rs + t.k0, d + g0 * s.O + bl.o0[t.j], s.O, a,
                                         fresh && !started);
            started = true;
          }
          g0 = c < nclasses ? start[c + 1] : g1;
        }
        if (fresh && !started) std::fill(a, a + tile_floats, 0.0f);
      }
    }
  };
  // The sums -> gw (O, C, kh, kw), for the pairs (block j, input channel c) [jc0, jc1) of bl.n * C: for each vector
  // of the block's output channels, the taps' vectors are summed over the parts (tile_at(it, p): tile it's sums in
  // part p; run value k = kw_index * C + c sits at row k % mr of tile (j, r, k / mr)), transposed in registers and
  // stored as 16 runs of taps values.
  std::vector<int64_t> first_item(static_cast<size_t>(bl.n) + 1, 0);  // block j's tiles start at first_item[j]
  for (int j = 0; j < bl.n; ++j)
    first_item[static_cast<size_t>(j) + 1] =
        first_item[static_cast<size_t>(j)] + s.kh * ((seg + mr_for(bl.nv[j]) - 1) / mr_for(bl.nv[j]));
  auto store = [&](int64_t jc0, int64_t jc1, int np, auto&& tile_at) {
    std::vector<const float*> at(static_cast<size_t>(taps * np));  // tap t's row in part p, at p * taps + t
    for (int64_t jc = jc0; jc < jc1; ++jc) {
      const int j = static_cast<int>(jc / C);
      const int64_t c = jc % C, nv = bl.nv[j], mr = mr_for(bl.nv[j]), per_row = (seg + mr - 1) / mr;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t k = t % s.kw * C + c, it = first_item[static_cast<size_t>(j)] + t / s.kw * per_row + k / mr;
        for (int p = 0; p < np; ++p) at[static_cast<size_t>(p * taps + t)] = tile_at(it, p) + k % mr * 16 * nv;
      }
      for (int64_t v = 0; v < nv; ++v) {
        const int64_t o0 = bl.o0[j] + 16 * v;
        if (o0 >= s.O) break;
        for (int64_t t0 = 0; t0 < taps; t0 += 16) {
          const int64_t tn = std::min<int64_t>(16, taps - t0);
          __m512 r[16];
          for (int64_t i = 0; i < 16; ++i) {
            r[i] = _mm512_setzero_ps();
            for (int p = 0; p < np && i < tn; ++p)
              r[i] = _mm512_add_ps(r[i], _mm512_loadu_ps(at[static_cast<size_t>(p * taps + t0 + i)] + 16 * v));
          }
          detail::transpose16(r);
          const __mmask16 m = static_cast<__mmask16>((1u << tn) - 1);
          for (int64_t i = 0; i < 16 && o0 + i < s.O; ++i)
            _mm512_mask_storeu_ps(gw + ((o0 + i) * C + c) * taps + t0, m, r[i]);
        }
      }
    }
  };

  if (!by_images) {
    W* xw = thread_scratch<W>(kGradX, static_cast<size_t>(n * image + kMaxMr));
    W* dw = thread_scratch<W>(kGradOut, static_cast<size_t>(n * units * s.O + 16));
    std::vector<const float*> tiles(static_cast<size_t>(n_items));  // where each tile's sums are
#pragma omp parallel
    {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) copy(i, xw + i * image, dw + i * units * s.O);
      const int64_t tid = thread_id(), nt = num_threads();
      const int64_t i0 = n_items * tid / nt, i1 = n_items * (tid + 1) / nt;
      float* acc = thread_scratch<float>(kGradAcc, static_cast<size_t>(std::max<int64_t>(1, i1 - i0) * tile_floats));
      sum(xw, dw, n * units, i0, i1, acc, true);
      for (int64_t it = i0; it < i1; ++it) tiles[static_cast<size_t>(it)] = acc + (it - i0) * tile_floats;
#pragma omp barrier
      store(bl.n * C * tid / nt, bl.n * C * (tid + 1) / nt, 1,
            [&](int64_t it, int) { return tiles[static_cast<size_t>(it)]; });
    }
    return;
  }
  // by images: images per group, copies of about 256 KB (a quarter of a Zen 4 core's L2, next to the tiles)
  const int64_t group =
      std::clamp<int64_t>((int64_t{256} << 10) / ((image + units * s.O) * static_cast<int64_t>(sizeof(W))), 1, n);
  std::vector<const float*> parts(static_cast<size_t>(max_t), nullptr);
#pragma omp parallel
  {
    const int64_t tid = thread_id(), nt = num_threads();
    const int64_t b0 = n * tid / nt, b1 = n * (tid + 1) / nt;
    if (b1 > b0) {
      W* xw = thread_scratch<W>(kGradX, static_cast<size_t>(group * image + kMaxMr));
      W* dw = thread_scratch<W>(kGradOut, static_cast<size_t>(group * units * s.O + 16));
      float* acc = thread_scratch<float>(kGradAcc, static_cast<size_t>(n_items * tile_floats));
      for (int64_t g0 = b0; g0 < b1; g0 += group) {
        const int64_t gn = std::min(group, b1 - g0);
        for (int64_t i = 0; i < gn; ++i) copy(g0 + i, xw + i * image, dw + i * units * s.O);
        sum(xw, dw, gn * units, 0, n_items, acc, g0 == b0);
      }
      parts[static_cast<size_t>(tid)] = acc;
    }
#pragma omp barrier
    std::vector<const float*> part;  // the threads' partial sums, in thread order
    for (const float* a : parts)
      if (a) part.push_back(a);
    store(bl.n * C * tid / nt, bl.n * C * (tid + 1) / nt, static_cast<int>(part.size()),
          [&](int64_t it, int p) { return part[static_cast<size_t>(p)] + it * tile_floats; });
  }
}

}  // namespace

double direct_weight_grad_skipped_share(const DirectConvShape& s) {
  return skipped_share(pad_classes(s, s.bf16), s);
}

bool direct_weight_grad_by_images(const DirectConvShape& s, int64_t n) {
  if (n < max_threads() || s.grad_split == 1) return false;
  if (s.grad_split == 2) return true;
  const Blocks bl = blocks_of(s.O);
  int64_t tiles = 0;
  for (int j = 0; j < bl.n; ++j) tiles += s.kh * ((s.kw * s.C + mr_for(bl.nv[j]) - 1) / mr_for(bl.nv[j]));
  const int64_t l2 = cpu_caches().l2.per_cpu() > 0 ? cpu_caches().l2.per_cpu() : int64_t{1} << 20;
  return tiles * kMaxMr * 64 * static_cast<int64_t>(sizeof(float)) <= l2;
}

size_t direct_weight_grad_bytes(const DirectConvShape& s, int64_t n) {
  const int64_t Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw;
  return static_cast<size_t>(n * (Hp * Wp * s.C + s.Ho * s.Wo * s.O)) * sizeof(float);
}

void direct_weight_grad(const float* x, const float* gout, int64_t n, const DirectConvShape& s, float* gw) {
  if (s.bf16)
    weight_grad<uint32_t>(x, gout, n, s, gw);
  else
    weight_grad<float>(x, gout, n, s, gw);
}

}  // namespace dl::cpu
