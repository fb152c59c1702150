#pragma once
// The convolution cases both autocast suites run (tests/gradcheck/autocast_test.cpp on the CPU,
// tests/cuda/autocast_test.cpp on the GPU): every path of the CPU's bf16 convolution (one image per
// GEMM, gathered images, 1x1, groups, stride 2 in narrow and wide rows, the implicit im2col with
// dilation and unequal padding, a Winograd-sized layer that must not take Winograd) and a bias.
#include <vector>

#include "tensor/op_defs.h"
#include "tensor/shape.h"

namespace dl::test {

struct AutocastConvCase {
  const char* name;
  Shape x, w;
  Conv2dParams p;
  bool bias = false;  // a nonnegative bias (so op(|x|, |w|) + b still bounds |y|)
};

inline std::vector<AutocastConvCase> autocast_conv_cases() {
  Conv2dParams s1;
  s1.padding = {1, 1};
  Conv2dParams s2;
  s2.stride = {2, 2};
  s2.padding = {1, 1};
  Conv2dParams g2;
  g2.groups = 2;
  g2.padding = {1, 1};
  Conv2dParams dil;  // the implicit-im2col forward (stride 1, planes of 400+ pixels) with dilation
  dil.padding = {2, 2};
  dil.dilation = {2, 2};
  Conv2dParams k5;  // ... and a 5x5 kernel with unequal padding
  k5.padding = {2, 1};
  return {
      {"3x3 dilation 2, 23x29 plane", {2, 6, 23, 29}, {8, 6, 3, 3}, dil},
      {"5x5, padding 2 and 1, 24x30 plane", {3, 4, 24, 30}, {7, 4, 5, 5}, k5},
      {"3x3 same, batch 5 (chunked images)", {5, 8, 7, 7}, {16, 8, 3, 3}, s1},
      {"3x3 stride 2, odd plane, bias", {3, 6, 11, 9}, {10, 6, 3, 3}, s2, true},
      {"3x3 stride 2, wide rows (the 2-byte word im2col)", {3, 5, 20, 37}, {6, 5, 3, 3}, s2},
      {"1x1 pointwise", {4, 32, 5, 5}, {24, 32, 1, 1}, {}},
      {"groups 2", {2, 8, 6, 6}, {12, 4, 3, 3}, g2},
      {"Winograd-sized layer (3x3, 128 channels, 20x20)", {2, 128, 20, 20}, {128, 128, 3, 3}, s1},
  };
}

}  // namespace dl::test
