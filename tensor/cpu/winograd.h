#pragma once
// Winograd F(m x m, 3x3) convolution, m = `tile` = 2 or 4, for 3x3, stride-1, dilation-1, single-group
// layers (tensor/cpu/winograd.cpp), used by tensor/cpu/conv.cpp for the forward pass and for the input
// gradient (which is the same kind of convolution with the weights flipped and transposed). An m x m
// output tile costs a*a multiply-adds per (input, output) channel pair, a = m + 2, instead of 9 m^2
// (16 instead of 36 for m = 2, 36 instead of 144 for m = 4): the a*a products become a*a GEMMs over
// all tiles of a chunk of images. The weight gradient of such a layer runs as F(3x3, 2x2) over the output
// gradient's 2x2 tiles (winograd_weight_grad below).
#include <cstdint>
#include <functional>

namespace dl::cpu {

// out (N, K, Ho, Wo) = conv(x (N, C, H, W), w) + bias (K) or nothing, with `pad` zeros on every side (Ho = H + 2 pad
// - 2, Wo = W + 2 pad - 2). w: the 3x3 kernels, (K, C, 3, 3); with `flip_transpose`, w (C, K, 3, 3) read as the
// (K, C) kernels of its input gradient, each rotated by 180 degrees (the input gradient of a layer with weights w
// is this convolution of its output gradient). The kernels are transformed (G g G^T) straight into the GEMMs'
// packed panels once per call. Threads as conv.cpp: the images split over threads when there are enough of them,
// else the GEMMs use the threads. image_done(n0, n1), where given, runs once images [n0, n1) of out are written,
// on the thread that wrote them (while they are still in its caches: conv.cpp applies the rest of its epilogue
// there).
template <typename T>
void winograd_conv(T* out, const T* x, const T* w, bool flip_transpose, const T* bias, int64_t N, int64_t C, int64_t H,
                   int64_t W, int64_t K, int64_t pad, int tile,
                   const std::function<void(int64_t, int64_t)>& image_done = nullptr);

// gw (O, C, 3, 3) = the weight gradient of a 3x3, stride-1, single-group convolution with `pad` on every side, from
// its inputs x (N, C, H, W) and output gradients gout (N, O, Ho, Wo): Winograd F(3x3, 2x2) over 2x2 tiles of gout
// (16 products per tile and channel pair instead of 36), the sums over the tiles as a*a GEMMs. The threads split
// the images and add their sums at the end, or, where that gives each thread few tiles (ConvTuning::
// winograd_dw_split), share one set of sums: each block's transforms split over the tiles, the GEMMs threaded.
template <typename T>
void winograd_weight_grad(T* gw, const T* x, const T* gout, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                          int64_t pad);

// a*a for the tile: how many transformed values a kernel has
constexpr int64_t winograd_positions(int tile) { return (tile + 2) * (tile + 2); }

}  // namespace dl::cpu
