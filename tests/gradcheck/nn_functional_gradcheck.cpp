// float64 finite-difference checks of the NN functions of autograd/functional.h: conv2d over
// strides, padding, dilation, groups (incl. depthwise), with and without bias, non-square kernels
// and inputs; linear; batch_norm in training (through the batch statistics) and eval, 2-D and
// 4-D; max/avg/adaptive pooling incl. padding and ceil_mode; dropout with a fixed seed;
// cross_entropy over reductions, label smoothing and class weights.
#include "autograd/functional.h"
#include "test_util.h"

using namespace dl;
using V = std::vector<Tensor>;

namespace {
Tensor in(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) { return test::random_input(s, seed, lo, hi); }
Tensor buffer(const Shape& s, uint64_t seed, double lo, double hi) { return test::random_input(s, seed, lo, hi, false); }
Conv2dParams conv_opt(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                       std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  return {stride, padding, dilation, groups};
}
}  // namespace

// ---- conv2d ------------------------------------------------------------------------------------

TEST_CASE("gradcheck: conv2d 3x3, padding 1, with bias") {
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], x[2], conv_opt({1, 1}, {1, 1})); },
                  V{in({3, 2, 5, 4}, 1), in({3, 2, 3, 3}, 2), in({3}, 3)});
}
TEST_CASE("gradcheck: conv2d without bias, single image") {
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1]); }, V{in({1, 3, 5, 5}, 4), in({2, 3, 2, 2}, 5)});
}
TEST_CASE("gradcheck: conv2d stride, padding and dilation per dim, non-square kernel and input") {
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], x[2], conv_opt({2, 1}, {1, 2}, {2, 1})); },
                  V{in({2, 2, 7, 6}, 6), in({3, 2, 3, 2}, 7), in({3}, 8)});
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], x[2], conv_opt({3, 2}, {0, 1}, {1, 2})); },
                  V{in({2, 1, 8, 7}, 9), in({2, 1, 2, 3}, 10), in({2}, 11)});
}
TEST_CASE("gradcheck: conv2d groups") {
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], Tensor(), conv_opt({1, 1}, {1, 0}, {1, 1}, 2)); },
                  V{in({2, 4, 4, 5}, 12), in({6, 2, 3, 2}, 13)});
}
TEST_CASE("gradcheck: conv2d depthwise (groups == channels)") {
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], x[2], conv_opt({2, 2}, {1, 1}, {1, 1}, 3)); },
                  V{in({3, 3, 5, 5}, 14), in({3, 1, 3, 3}, 15), in({3}, 16)});
}
TEST_CASE("gradcheck: conv2d 1x1 (the GEMM-only fast path) and 1x1 stride 2") {
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], x[2]); },
                  V{in({3, 4, 3, 3}, 17), in({5, 4, 1, 1}, 18), in({5}, 19)});
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], Tensor(), conv_opt({2, 2}, {0, 0})); },
                  V{in({2, 3, 5, 4}, 20), in({2, 3, 1, 1}, 21)});
}
TEST_CASE("gradcheck: conv2d on a transposed (non-contiguous) input and an unbatched input") {
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0].transpose(2, 3), x[1], x[2], conv_opt({1, 1}, {1, 1})); },
                  V{in({2, 2, 4, 5}, 22), in({2, 2, 3, 3}, 23), in({2}, 24)});
  CHECK_GRADCHECK([](const V& x) { return conv2d(x[0], x[1], x[2], conv_opt({1, 2}, {1, 1})); },
                  V{in({2, 4, 5}, 25), in({3, 2, 2, 3}, 26), in({3}, 27)});
}

// ---- linear ------------------------------------------------------------------------------------

TEST_CASE("gradcheck: linear with and without bias, 1-D to 3-D inputs") {
  CHECK_GRADCHECK([](const V& x) { return linear(x[0], x[1], x[2]); }, V{in({4, 5}, 30), in({3, 5}, 31), in({3}, 32)});
  CHECK_GRADCHECK([](const V& x) { return linear(x[0], x[1]); }, V{in({4, 5}, 33), in({2, 5}, 34)});
  CHECK_GRADCHECK([](const V& x) { return linear(x[0], x[1], x[2]); },
                  V{in({2, 3, 4}, 35), in({3, 4}, 36), in({3}, 37)});
  CHECK_GRADCHECK([](const V& x) { return linear(x[0].t(), x[1], x[2]); }, V{in({4, 3}, 38), in({2, 4}, 39), in({2}, 40)});
  CHECK_GRADCHECK([](const V& x) { return linear(x[0], x[1], x[2]); }, V{in({4}, 41), in({3, 4}, 42), in({3}, 43)});
}

// ---- batch norm --------------------------------------------------------------------------------

TEST_CASE("gradcheck: batch_norm training, 4-D, through the batch statistics (x, weight, bias)") {
  Tensor rm = buffer({3}, 50, -0.5, 0.5), rv = buffer({3}, 51, 0.5, 1.5);
  CHECK_GRADCHECK([rm, rv](const V& x) { return batch_norm(x[0], rm, rv, x[1], x[2], true, 0.1, 1e-5); },
                  V{in({3, 3, 3, 2}, 52, -2.0, 3.0), in({3}, 53, 0.5, 1.5), in({3}, 54)});
}
TEST_CASE("gradcheck: batch_norm training, 2-D, without running stats and without affine") {
  CHECK_GRADCHECK([](const V& x) { return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true); },
                  V{in({6, 4}, 55), in({4}, 56, 0.5, 1.5), in({4}, 57)});
  CHECK_GRADCHECK([](const V& x) { return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-3); },
                  V{in({2, 3, 2, 2}, 58)});
}
TEST_CASE("gradcheck: batch_norm training on a permuted (non-contiguous) 4-D input") {
  CHECK_GRADCHECK([](const V& x) { return batch_norm(x[0].permute({0, 1, 3, 2}), Tensor(), Tensor(), x[1], x[2], true); },
                  V{in({2, 3, 2, 4}, 59), in({3}, 68, 0.5, 1.5), in({3}, 69)});
}
TEST_CASE("gradcheck: batch_norm eval, 2-D and 4-D") {
  Tensor rm = buffer({3}, 60, -0.5, 0.5), rv = buffer({3}, 61, 0.5, 1.5);
  CHECK_GRADCHECK([rm, rv](const V& x) { return batch_norm(x[0], rm, rv, x[1], x[2], false); },
                  V{in({4, 3}, 62), in({3}, 63), in({3}, 64)});
  CHECK_GRADCHECK([rm, rv](const V& x) { return batch_norm(x[0], rm, rv, x[1], x[2], false); },
                  V{in({2, 3, 3, 2}, 65), in({3}, 66), in({3}, 67)});
}

// ---- pooling (random inputs: ties between window elements are improbable) ---------------------

TEST_CASE("gradcheck: max_pool2d (plain, padded 3x3 stride 2, ceil_mode, rectangular)") {
  CHECK_GRADCHECK([](const V& x) { return max_pool2d(x[0], {{2, 2}}); }, V{in({2, 2, 4, 6}, 70)});
  CHECK_GRADCHECK([](const V& x) { return max_pool2d(x[0], {{3, 3}, {2, 2}, {1, 1}}); }, V{in({2, 2, 7, 7}, 71)});
  CHECK_GRADCHECK([](const V& x) { return max_pool2d(x[0], {{2, 2}, {2, 2}, {1, 1}, true}); }, V{in({1, 2, 5, 5}, 72)});
  CHECK_GRADCHECK([](const V& x) { return max_pool2d(x[0], {{3, 2}, {2, 1}, {1, 0}, true}); }, V{in({2, 1, 6, 5}, 73)});
  CHECK_GRADCHECK([](const V& x) { return max_pool2d(x[0].transpose(2, 3), {{2, 2}, {1, 1}}); }, V{in({1, 2, 4, 3}, 79)});
}
TEST_CASE("gradcheck: avg_pool2d (count_include_pad on and off, ceil_mode)") {
  CHECK_GRADCHECK([](const V& x) { return avg_pool2d(x[0], {{2, 2}}); }, V{in({2, 2, 4, 6}, 74)});
  CHECK_GRADCHECK([](const V& x) { return avg_pool2d(x[0], {{3, 3}, {2, 2}, {1, 1}}); }, V{in({2, 2, 5, 5}, 75)});
  CHECK_GRADCHECK([](const V& x) { return avg_pool2d(x[0], {{3, 3}, {2, 2}, {1, 1}, false, false}); },
                  V{in({2, 2, 5, 5}, 76)});
  CHECK_GRADCHECK([](const V& x) { return avg_pool2d(x[0], {{3, 3}, {2, 2}, {1, 1}, true, true}); },
                  V{in({1, 2, 6, 6}, 77)});
  CHECK_GRADCHECK([](const V& x) { return avg_pool2d(x[0], {{3, 2}, {2, 2}, {1, 1}, true, false}); },
                  V{in({1, 2, 6, 5}, 78)});
}
TEST_CASE("gradcheck: adaptive_avg_pool2d to sizes that do not divide the input") {
  CHECK_GRADCHECK([](const V& x) { return adaptive_avg_pool2d(x[0], {3, 2}); }, V{in({2, 2, 7, 5}, 80)});
  CHECK_GRADCHECK([](const V& x) { return adaptive_avg_pool2d(x[0], {4, 4}); }, V{in({1, 2, 10, 6}, 81)});
  CHECK_GRADCHECK([](const V& x) { return adaptive_avg_pool2d(x[0], {5, 4}); }, V{in({1, 2, 3, 3}, 82)});
  CHECK_GRADCHECK([](const V& x) { return adaptive_avg_pool2d(x[0], {1, 1}); }, V{in({2, 3, 4, 4}, 83)});
}

// ---- dropout -----------------------------------------------------------------------------------

TEST_CASE("gradcheck: dropout with a fixed seed (gradcheck re-seeds before each forward)") {
  CHECK_GRADCHECK([](const V& x) { return dropout(x[0], 0.3, true); }, V{in({4, 5}, 90)});
  CHECK_GRADCHECK([](const V& x) { return dropout(x[0] * 2.0, 0.6, true) + x[0]; }, V{in({3, 7}, 91)});
  CHECK_GRADCHECK([](const V& x) { return dropout(x[0], 0.5, false); }, V{in({3, 3}, 92)});
}

// ---- cross entropy -----------------------------------------------------------------------------

TEST_CASE("gradcheck: cross_entropy over reductions, class weights and label smoothing") {
  Tensor target = from_vector<int64_t>({0, 3, 1, 3, 2}, {5});
  Tensor weight = buffer({4}, 100, 0.2, 2.0);
  for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    for (double ls : {0.0, 0.2}) {
      for (bool weighted : {false, true}) {
        CrossEntropyOptions opt;
        opt.reduction = red;
        opt.label_smoothing = ls;
        if (weighted) opt.weight = weight;
        INFO("reduction ", static_cast<int>(red), ", label_smoothing ", ls, ", weighted ", weighted);
        CHECK_GRADCHECK([&](const V& x) { return cross_entropy(x[0], target, opt); }, V{in({5, 4}, 101, -2.0, 2.0)});
      }
    }
  }
}
TEST_CASE("gradcheck: cross_entropy on a single unbatched sample") {
  Tensor target = scalar_tensor(2, DType::Int64);
  CHECK_GRADCHECK([&](const V& x) { return cross_entropy(x[0], target); }, V{in({4}, 102)});
}
