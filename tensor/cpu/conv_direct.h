#pragma once
// Internal: direct convolution on channels-last copies of the input (AVX-512F and BW, or AVX2 and FMA), the
// oneDNN way: no im2col and no packing of the input at all. The images are copied once into a zero-padded NHWC
// buffer; a register tile of MR output positions x NV vectors of output channels then accumulates, for each
// kernel row, the products of the KW * C consecutive input values under each position (broadcast straight from
// the copy) with the same KW * C rows of the weights, packed once per call as [block][kh][kw][c][NV*lanes] (a block's
// weights larger than ~320 KB: passes of 16k input channels, each tap a run of the pass's channels). The
// positions of a tile may lie in different rows and images (each has its own pointer), so small planes
// (ResNet18's 4x4 and 2x2 layers) lose nothing to row ends. Float32 (FMA) or bfloat16 (vdpbf16ps, float32
// sums); the weight gradient below. conv.cpp owns the epilogue and the choice of algorithm
// (Algo::direct). One source (conv_direct.inc) compiled for each instruction set: AVX-512 (16 output channels a
// vector, tiles up to 6 positions x 64 channels, bfloat16 by vdpbf16ps) and AVX2 + FMA (8 a vector, tiles up to
// 4 x 24 or 6 x 16; bfloat16 emulated in float32), picked from CPUID at run time (direct_kernels) or by ConvTuning::direct_isa.
#include <cstddef>
#include <cstdint>

namespace dl::cpu {

struct DirectConvShape {
  int64_t C, H, W, O, kh, kw, sh, sw, ph, pw, Ho, Wo;  // dilation 1, one group
  // bfloat16 operands (autocast): the copy and the weights rounded to nearest even, products summed in float32.
  // AVX-512 kernels: by vdpbf16ps (needs AVX512_BF16), pairs of values per k step, so the copy's channels are
  // rounded up to even. AVX2 kernels: emulated, the rounded values kept in float32 and multiplied by FMAs (exact
  // products), so the same sums in another order.
  bool bf16 = false;
  // The weight gradient's split over the threads: ConvTuning::direct_grad_split (0 chosen by size, 1 by tiles,
  // 2 by images).
  int grad_split = 0;
  // Zero padding after the last row and column, where it differs from ph / pw before the first (-1: the same). The
  // phases of a strided layer's input gradient (conv.cpp, backward_input_direct) need one row or column more on
  // one side; the output is still Ho x Wo, and the copy holds rows_padded x cols_padded positions.
  int64_t ph_end = -1, pw_end = -1;
};
inline int64_t pad_bottom(const DirectConvShape& s) { return s.ph_end < 0 ? s.ph : s.ph_end; }
inline int64_t pad_right(const DirectConvShape& s) { return s.pw_end < 0 ? s.pw : s.pw_end; }
inline int64_t rows_padded(const DirectConvShape& s) { return s.H + s.ph + pad_bottom(s); }
inline int64_t cols_padded(const DirectConvShape& s) { return s.W + s.pw + pad_right(s); }

// The kernels for one instruction set. The packed weights' layout depends on the vector width, so a packing and
// the convolutions that read it must come from the same set (the functions below use direct_kernels()).
struct DirectStore;
struct DirectKernels {
  const char* name;  // "avx512", "avx2"
  int lanes;         // float32 values a vector
  // How it multiplies bfloat16 operands (DirectConvShape::bf16): "vdpbf16ps" (AVX-512 on a CPU with AVX512_BF16),
  // "emulated" (AVX2: bfloat16-rounded float32 operands, FMAs), or nullptr (AVX-512 without AVX512_BF16: not at all).
  const char* bf16;
  size_t (*packed_weights_bytes)(const DirectConvShape&);
  void (*pack_weights)(const float*, const DirectConvShape&, void*, const struct DirectGradientTaps*);
  void (*pack_phases)(const float*, int, const DirectConvShape*, void* const*, const struct DirectGradientTaps*);
  void (*conv_images)(const float*, int64_t, const void*, const DirectConvShape&, const DirectStore&, int, int);
  double (*weight_grad_skipped_share)(const DirectConvShape&);
  bool (*weight_grad_by_images)(const DirectConvShape&, int64_t);
  void (*weight_grad)(const float*, const float*, int64_t, const DirectConvShape&, float*);
  void (*to_channels_last)(const float*, int64_t, const DirectConvShape&, float*);
  void (*from_channels_last)(const float*, int64_t, int64_t, int64_t, float*, int64_t);
  void (*planar_forward)(const float*, int64_t, const float*, const float*, const DirectConvShape&, int64_t, int64_t,
                         float*);
  void (*planar_weight_grad)(const float*, const float*, int64_t, const DirectConvShape&, int64_t, int64_t, float*);
};
// Defined in simd_avx512.cpp and simd_avx2.cpp; call only where the CPU has that set.
const DirectKernels& direct_kernels_avx512();
const DirectKernels& direct_kernels_avx2();
// Which sets this CPU runs: 2 AVX-512F and BW (and BMI2), 1 AVX2 and FMA, 0 neither.
int direct_best_isa();
// The set in use: ConvTuning::direct_isa (0 the best the CPU has; 1 AVX2; 2 AVX-512) where the CPU has it, else
// the best. Null where the CPU has neither.
const DirectKernels* direct_kernels();

// Bytes of the packed weights of a shape (O rounded up to the vector width).
size_t direct_packed_weights_bytes(const DirectConvShape& s);
// w (O, C, kh, kw), float32 -> the packed layout above (bfloat16 pairs when s.bf16); zeros for the channels
// past O (and past C). Uses the threads. With from_gradient, w holds instead the weights (C, O, taps) of the layer
// whose input gradient this convolution computes (its output gradient convolved with them transposed and flipped,
// or for a strided layer with a phase's share of them; conv.cpp: backward_input_direct): that kernel's tap t goes
// to this shape's tap into[t], or nowhere where into[t] < 0 (each of this shape's taps from exactly one). Packed
// straight from them, without a copy.
struct DirectGradientTaps {
  int64_t taps = 0;
  const int32_t* into = nullptr;
};
void direct_pack_weights(const float* w, const DirectConvShape& s, void* wp,
                         const DirectGradientTaps* from_gradient = nullptr);
// The same from_gradient packing for the n phases of a strided layer's input gradient at once (shape s[p], taps
// taps[p], into wp[p]): where it can, one walk over w, each tap stored into its phase's packing.
void direct_pack_phases(const float* w, int n, const DirectConvShape* s, void* const* wp,
                        const DirectGradientTaps* taps);

// Receives the results of a block of output channels for one image: rows[o * ld + l] (o < on, l < len) is
// output channel o0 + o at plane position l0 + l of image `image` (counted from the x given).
struct DirectStore {
  virtual void operator()(int64_t image, int64_t l0, int64_t len, int64_t o0, int64_t on, const float* rows,
                          int64_t ld) const = 0;
};

// Convolves the n images at x (NCHW, float32) with the packed weights, on the calling thread (its scratch
// slots 10-12; the packing uses slot 14 of each thread), handing every output value to store exactly once;
// or, with parts > 1, part `part` of the n * Ho * Wo output positions cut into `parts` equal ranges (for
// threads that share fewer images than there are threads). Needs direct_kernels().
void direct_conv_images(const float* x, int64_t n, const void* wp, const DirectConvShape& s,
                        const DirectStore& store, int part = 0, int parts = 1);

// The b images at x (NCHW, float32) -> xp (b, rows_padded(s), cols_padded(s), C), zero borders: the kernels' own
// channels-last copy (vector transposes; float32, s.bf16 ignored), also for conv.cpp's implicit-GEMM weight
// gradient; without `vector`, loops (which need no direct kernels).
void direct_to_channels_last(const float* x, int64_t b, const DirectConvShape& s, float* xp, bool vector = true);
// The way back: rows[o * ld + l] = src[l * lda + o] for o < on, l < len (len positions of on channels each, lda
// apart, to on planes ld apart); vector transposes where `vector` and on is a multiple of the vector width, else
// loops (which need no direct kernels).
void direct_from_channels_last(const float* src, int64_t lda, int64_t len, int64_t on, float* rows, int64_t ld,
                               bool vector = true);

// The weight gradient: gw (O, C, kh, kw) = the sum over the n images at x (NCHW) and their output gradients gout
// (n, O, Ho, Wo), float32. Each image is copied once to channels-last; register tiles of the gradient (MR
// consecutive values of a kernel row's run x 16-64 output channels) sum over the positions. The threads split
// either the tiles (all copies made first, shared; up to direct_weight_grad_bytes of scratch on the calling
// thread) or, where direct_weight_grad_by_images says so, the images (each thread copies its own few at a time
// and sums every tile; the threads' partial gradients are added at the end, so there the order of the sums, and
// their last bits, depend on the number of threads; for a given number the results repeat exactly).
// With s.bf16 the operands are rounded to bfloat16 and vdpbf16ps sums pairs of neighbouring output positions
// of a row (the input copy holds, for each column, the words (x[w], x[w + sw]); the output gradient's words
// (g[ow], g[ow + 1]); an odd row's last position pairs with a zero gradient, times the input one column on: an
// infinite or NaN input there would make that sum NaN where float32's would not see it).
size_t direct_weight_grad_bytes(const DirectConvShape& s, int64_t n);
// The share of the weight gradient's products with the zero padding, which it skips where the share is at least
// kMinSkippedShare (positions, or in bfloat16 pairs of positions, sorted by which taps they reach inside the image).
constexpr double kMinSkippedShare = 0.1;
double direct_weight_grad_skipped_share(const DirectConvShape& s);
bool direct_weight_grad_by_images(const DirectConvShape& s, int64_t n);
void direct_weight_grad(const float* x, const float* gout, int64_t n, const DirectConvShape& s, float* gw);

// The planar convolution (conv_planar.inc): layers with few input channels (a small CNN's first layer, a stem),
// vectors along the output plane, NCHW in and out, no transposes; float32 only (s.bf16 must be false), dilation 1,
// one group, any stride. Each image is copied into C * kw * sh shifted planes (rows Ho + (kh - 1) / sh, each Wo
// wide) so that every tap is one offset from the output position. On the calling thread (its scratch slots 10, 12
// and 17); need direct_kernels().
// Forward: out (n, O, Ho, Wo) channels [o0, o1) of the n images at x (NCHW) = conv(x, w (O, C, kh, kw)) + bias
// (null: none), written straight into out. Weight gradient: gw ((o1 - o0), C, kh, kw) = the sum over the n images
// of their products for output channels [o0, o1); each image's sums are added in position order, in vectors, and
// the vectors' lanes summed at the end, so a split over the output channels changes no bit.
bool direct_planar_applies(const DirectConvShape& s);
void direct_planar_forward(const float* x, int64_t n, const float* w, const float* bias, const DirectConvShape& s,
                           int64_t o0, int64_t o1, float* out);
void direct_planar_weight_grad(const float* x, const float* gout, int64_t n, const DirectConvShape& s, int64_t o0,
                               int64_t o1, float* gw);

}  // namespace dl::cpu
