#pragma once
// Winograd F(2x2, 3x3) convolution for 3x3, stride-1, dilation-1, single-group layers (tensor/cpu/
// winograd.cpp), used by tensor/cpu/conv.cpp for the forward pass and for the input gradient (which
// is the same kind of convolution with the weights flipped and transposed). Each 2x2 output tile
// costs 16 multiply-adds per (input, output) channel pair instead of 36: the 16 products become 16
// GEMMs over all tiles of a chunk of images.
#include <cstdint>

namespace dl::cpu {

// U (16, O, C): the transformed 3x3 kernels G g G^T of w (O, C, 3, 3); with `flip_transpose`, of
// w'(c, o) = w(o, c) rotated by 180 degrees, i.e. w (O, C, 3, 3) read as the (C, O) kernels of the
// input gradient (U is then (16, C, O)).
template <typename T>
void winograd_transform_weights(const T* w, int64_t O, int64_t C, bool flip_transpose, T* U);

// out (N, K, Ho, Wo) = conv(x (N, C, H, W), the kernels U (16, K, C)) + bias (K) or nothing, with
// `pad` zeros on every side (Ho = H + 2 pad - 2, Wo = W + 2 pad - 2). Threads as conv.cpp: the
// images split over threads when there are enough of them, else the GEMMs use the threads.
template <typename T>
void winograd_conv(T* out, const T* x, const T* U, const T* bias, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t K, int64_t pad);

}  // namespace dl::cpu
