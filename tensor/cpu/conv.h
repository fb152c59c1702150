#pragma once
// Knobs of the CPU convolution kernels (tensor/cpu/conv.cpp), for the benchmark and for tests that
// must reach every path on small shapes. The defaults are what the kernels use; nothing else needs
// this header.
#include <cstdint>

namespace dl::cpu {

struct ConvTuning {
  // Images whose output planes are small are convolved several at a time: their im2col columns sit
  // side by side in one (K, B * L) matrix, so the GEMM sees B * L columns instead of L (a 3x3
  // layer at 7x7 would otherwise be 49-column GEMMs). B grows until B * L reaches this ...
  int64_t target_columns = 512;
  // ... while the column buffer of one thread stays under this many bytes.
  int64_t max_col_bytes = int64_t{8} << 20;
  // 3x3, stride 1, dilation 1, groups 1 convolutions use Winograd F(2x2, 3x3) (forward and input
  // gradient; F(3x3, 2x2) for the weight gradient) when both channel counts lie in [winograd_min_channels, winograd_max_channels] and the
  // output plane has at least winograd_min_plane pixels; winograd_min_channels = 0 turns it off.
  // The window is where Winograd on channels-last tile blocks (winograd.cpp) measured faster than the direct
  // convolution. First on an AVX2 Zen 3 (2 threads, inside the training step): ResNet18's 64x16x16 forward and input
  // gradient at batch 64 23.0 and 22.4 ms against 26.6 and 26.8, its 64- and 128-channel layers at 224x224 and the
  // scratch CNN's 48x14x14 likewise (the algorithm search's choices); their weight gradients, F(3x3, 2x2), 1.1-1.4x
  // the channels-last implicit GEMM on ResNet18's 64x16x16, 128x8x8, 64x56x56 and 128x28x28 layers. Since its
  // kernels are transformed straight into the GEMMs' panels (a scalar transform had taken a quarter of a 512-channel
  // forward), up to 512 channels and down to 4x4 planes on the AVX2 Zen 4 guest (paired with the direct convolution,
  // in isolation): ResNet18's 512x7x7 forward and input gradient at batch 32 1.13-1.21x, 256x14x14 1.5-1.7x, 256x4x4
  // at batch 64 1.25-1.30x (weight gradient 1.6x), the scratch CNN's 96x7x7 -> 256 1.11-1.14x; on 3x3 and 2x2 planes
  // (9 and 4 pixels, where the direct convolution skips the padding's taps) it ran 0.54-0.77x. The search still
  // measures; this is its default.
  int64_t winograd_min_channels = 48;
  int64_t winograd_max_channels = 512;
  int64_t winograd_min_plane = 16;
  // Winograd's output tile: 2, F(2x2, 3x3) only; 4, also F(4x4, 3x3): 36 products per 16 outputs instead of
  // 16 per 4, so up to 1.4x faster again on ResNet18's 64- and 128-channel layers (tensor/cpu/winograd.cpp), but
  // its transforms multiply the rounding of the transformed sums by up to 8: 2.5-14x the float32 error of
  // im2col + GEMM on 64-512 channels (F(2x2): 0.4-1.7x; fast_kernels_test measures it). So it is an opt-in:
  // with 4 the algorithm search also times F(4x4), and the fixed rules take it inside the window above.
  int winograd_tile = 2;
  // Winograd's tiles go through transform, GEMMs and inverse transform in blocks whose transformed inputs and
  // outputs (a*a values per tile and channel) take about this many bytes, at least 24 tiles.
  int64_t winograd_block_bytes = int64_t{256} << 10;
  // Winograd's transforms in their AVX2 + FMA build where the CPU has AVX2 and FMA; false: their baseline x86-64
  // build (for tests and measuring; the sums differ in their last bits, FMA rounding once).
  bool winograd_avx2 = true;
  // How Winograd's weight gradient (F(3x3, 2x2), winograd.cpp) splits its sums over the threads: 0 by the rule
  // below; 1 by images (each thread sums its images' tiles into its own a*a x O x C matrices, added at the end);
  // 2 shared (one set of sums, all threads on each block of tiles: the transforms split over the tiles, the GEMMs
  // use the threads). The rule shares where the images give each thread fewer than winograd_dw_shared_tiles
  // tiles and a thread's sums would take more than 1.5x a core's L2: there the partial sums' memory traffic
  // outweighs the products (512 channels on 2x2 planes). Where they fit (about) in L2, the threads' own sums ran
  // faster: on the Zen 4 guest (1 MB L2) ResNet18's 128x8x8 -> 128 (1 MB of sums) 1.19-1.23x and the scratch CNN's
  // 96x7x7 -> 256 (1.5 MB) 1.21x; 256x4x4 -> 256 (4 MB) 0.95x (in isolation, paired in one process).
  int winograd_dw_split = 0;
  int64_t winograd_dw_shared_tiles = 1024;
  // The fixed rules' use of the implicit GEMM (float32 passes outside Winograd's window pack the im2col
  // matrix for the GEMM straight from the images, no column matrix written): 0 never (im2col, then the
  // GEMM packs it), 1 where it measured faster (conv.cpp: packed_fast and its neighbours; the weight gradient
  // from a channels-last copy on AVX2 CPUs, channels_last_fast), 2 always (for tests).
  int packed_forward = 1;
  // im2col and col2im run in their AVX-512 forms where the CPU has AVX-512F and BW (conv.cpp: shifted and
  // phase planes, gathers, bands of columns), the implicit GEMM's forward packs its panels in AVX2 where the CPU
  // has AVX2 but not AVX-512F; false: the scalar loops (for tests and measuring; the results are the same).
  bool vector_im2col = true;
  // The direct convolution on channels-last copies (conv_direct.h; forwards, input gradients (strided ones by
  // phases) and weight gradients, float32 and bfloat16, AVX-512F or AVX2): 0 never, 1 a candidate of the algorithm search, 2 always where it applies (for
  // tests).
  int direct = 1;
  // Its instruction set (the planar convolution's too): 0 the best the CPU has, 1 AVX2 + FMA, 2 AVX-512 (where the
  // CPU has it; for tests and measuring what each buys).
  int direct_isa = 0;
  // The planar convolution (conv_planar.inc: forwards and weight gradients of layers with few input channels, a
  // stem's included, vectors along the output plane): 0 never, 1 a candidate of the algorithm search (and the fixed
  // rule's choice where it measured faster: conv.cpp, planar_fast_for), 2 always where it applies (for tests).
  int planar = 1;
  // How the direct weight gradient splits its work over the threads (conv_direct.cpp, weight_grad): 0 by images
  // where its register tiles fit in a core's L2 and every thread gets an image, else by tiles; 1 always by tiles;
  // 2 by images wherever every thread gets an image (for tests). 1 also keeps the fixed rule off the direct
  // weight gradient, as before the split by images existed (for measuring what it buys).
  int direct_grad_split = 0;
  // The implicit GEMM's weight gradient splits the images over the threads, each summing its share into its own
  // partial gradient (added at the end), unless the gradient takes at least weight_grad_shared_bytes and each
  // thread's share of the images holds fewer than weight_grad_shared_columns output positions: then one walk over
  // all images, its GEMMs (and their gathers) on the threads, no partial gradients. Measured on the AVX2 Zen 3 at
  // batch 64: 1.07-1.14x on ResNet18's 512x2x2 and 256x4x4 -> 512 3x3 layers and the scratch CNN's 256x3x3,
  // level on 128x8x8 -> 256 and 96x7x7, 0.93x on a 1x1/2 layer with a 0.5 MB gradient. 0 columns: always split.
  // (im2col + GEMM keeps the split: its im2col would run on one thread.)
  int64_t weight_grad_shared_columns = 1024;
  int64_t weight_grad_shared_bytes = int64_t{2} << 20;
};

// The settings in force (process-wide; change them only while no convolution runs). The
// environment can override eight at start-up: DL_CONV_COLUMNS=n (target_columns; 1 = one image per
// GEMM), DL_CONV_WINOGRAD=0|2|4 (no Winograd; winograd_tile), DL_CONV_PACKED=0|1|2 (packed_forward), DL_CONV_IM2COL=scalar
// (vector_im2col false), DL_CONV_DIRECT=0|1|2 (direct), DL_CONV_DIRECT_SPLIT=0|1|2 (direct_grad_split),
// DL_CONV_WINOGRAD_DW_SPLIT=0|1|2 (winograd_dw_split) and DL_CONV_DIRECT_ISA=avx2|avx512 (direct_isa).
ConvTuning& conv_tuning();

}  // namespace dl::cpu

#include <string>
#include <utility>
#include <vector>

namespace dl::cpu {

// ---- per-shape algorithm choice (like cuDNN's algorithm search) ------------------------------------
// Each pass of each layer shape (forward, input gradient, weight gradient; dtype, autocast precision,
// geometry, batch and thread count) is computed by one of: im2col + GEMM with 256, 512, 1024 or 2048
// columns per GEMM; the same GEMMs with the im2col matrix packed for the GEMM straight from the images
// (float32 forwards; weight gradients, from a channels-last copy of the images or gathered; stride-1 input
// gradients run as the forward of the output gradient with the flipped kernels, strided ones through a
// channels-last col2im); the direct convolution on channels-last copies (AVX-512: float32 and
// bfloat16 forwards, input gradients (a strided layer's as one stride-1 convolution per phase of the input) and
// weight gradients; AVX2 the same, bfloat16 emulated; conv_direct.h); Winograd
// F(2x2, 3x3); or (bfloat16 forward) the implicit im2col. In `search` mode
// (the default) the first call of a shape times every candidate that applies on the call's own data
// (each run twice, the faster kept), keeps the fastest (when it beats the fixed rule's choice by 10% or
// more, confirmed by two more alternating runs of both: timings in isolation flatter small differences,
// and this VM has slow spells) for the rest of the process and appends it to
// the cache file, so later processes on the same CPU (model name and GEMM kernel) and thread count
// reuse it without measuring: same choices, same numerics. `heuristic` mode (DL_CONV_ALGO=heuristic)
// uses the fixed rules of ConvTuning instead and touches no file; the test suite runs in it so its
// numbers do not depend on timings.
//   DL_CONV_ALGO=search|heuristic      read on every call
//   DL_CONV_ALGO_CACHE=FILE            the cache file; empty: none. Default:
//                                      $XDG_CACHE_HOME/dl/conv_algos.tsv, else ~/.cache/dl/conv_algos.tsv
// The file holds one choice per line (format version, CPU, GEMM kernel, shape key, algorithm, separated by
// tabs; the key ends with a hash of the candidates' names and of a kernel revision, so a choice made among
// other candidates, by an older build or under other DL_CONV_* settings, is measured again). Lines for another CPU are kept but
// unused; malformed lines are ignored with one warning; a choice that does not apply to its shape is
// measured again. Delete the file to measure everything anew.
bool conv_algo_search_enabled();
std::string conv_algo_cache_path();
// The choices this process ran: (shape key, algorithm), in key order, for the keys it measured or took from the
// cache file (the file's other lines, from other builds, settings and shapes, are left out); for profiles and tests.
std::vector<std::pair<std::string, std::string>> conv_algo_choices();
// Forgets this process's choices; the cache file is read again at the next search (for tests).
void conv_algo_reset();

}  // namespace dl::cpu
