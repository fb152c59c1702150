// CUDA NN kernels against the CPU ones, through both backends where there are two (cuDNN and the
// hand-written kernels): conv2d forward / backward input / weight / bias over strides, padding,
// dilation, groups, 1x1 and odd sizes; batch norm in training and eval with and without affine
// and running statistics; max / avg / adaptive pooling with their edge rules; cross-entropy with
// class weights and label smoothing.
#include "cuda_test_util.h"
#include "tensor/nn_ops.h"

using namespace dl;
using dl::test::to_cpu;
using dl::test::to_gpu;

namespace {

struct ConvCase {
  int64_t N, C, H, W, O, kh, kw;
  Conv2dParams p;
  bool bias;
};

std::string conv_str(const ConvCase& c) {
  return fmt::format("N{} C{} {}x{} O{} k{}x{} s{},{} p{},{} d{},{} g{} bias{}", c.N, c.C, c.H, c.W, c.O, c.kh, c.kw,
                     c.p.stride[0], c.p.stride[1], c.p.padding[0], c.p.padding[1], c.p.dilation[0], c.p.dilation[1],
                     c.p.groups, c.bias);
}

Conv2dParams params(int64_t s, int64_t p, int64_t d = 1, int64_t g = 1) {
  Conv2dParams r;
  r.stride = {s, s};
  r.padding = {p, p};
  r.dilation = {d, d};
  r.groups = g;
  return r;
}

}  // namespace

TEST_CASE("conv2d forward and backward match the CPU through cuDNN and the hand-written kernels") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(31);
  Conv2dParams asym;
  asym.stride = {2, 1};
  asym.padding = {0, 2};
  asym.dilation = {1, 2};
  const std::vector<ConvCase> cases = {
      {2, 3, 8, 8, 4, 3, 3, params(1, 1), true},       // "same" 3x3
      {3, 5, 9, 7, 6, 3, 3, params(2, 1), true},       // stride 2, odd sizes
      {2, 4, 10, 10, 8, 1, 1, params(1, 0), false},    // pointwise: no im2col
      {2, 4, 10, 10, 8, 1, 1, params(2, 0), true},     // strided 1x1 (ResNet downsample)
      {1, 6, 11, 13, 6, 3, 3, params(1, 2, 2), true},  // dilation
      {2, 8, 6, 6, 12, 3, 3, params(1, 1, 1, 4), true},  // groups
      {2, 8, 7, 7, 8, 3, 3, params(1, 1, 1, 8), false},  // depthwise
      {1, 3, 15, 15, 16, 7, 7, params(2, 3), false},   // the ResNet stem, small
      {1, 2, 5, 9, 3, 2, 4, asym, true},               // asymmetric everything
      {5, 1, 1, 1, 2, 1, 1, params(1, 0), true},       // 1x1 images
      {64, 16, 8, 8, 32, 3, 3, params(1, 1), true},    // a larger batch
  };
  for (cuda::Backend be : test::all_backends()) {
    cuda::BackendGuard guard(cuda::OpFamily::Conv, be);
    for (DType dt : {DType::Float32, DType::Float64}) {
      for (const ConvCase& c : cases) {
        CAPTURE(cuda::to_string(be));
        CAPTURE(dtype_name(dt));
        CAPTURE(conv_str(c));
        Tensor x = test::uniform({c.N, c.C, c.H, c.W}, dt, g);
        Tensor w = test::uniform({c.O, c.C / c.p.groups, c.kh, c.kw}, dt, g);
        Tensor b = c.bias ? test::uniform({c.O}, dt, g) : Tensor();
        Tensor y = ops::conv2d_forward(x, w, b, c.p);
        Tensor yg = ops::conv2d_forward(to_gpu(x), to_gpu(w), c.bias ? to_gpu(b) : Tensor(), c.p);
        // sums of up to C/g * kh * kw (forward), O/g * kh * kw (input) or N * Ho * Wo (weight)
        // products of values in [-2, 2): float32 rounding differs with the summation order
        // cuDNN may pick Winograd or FFT algorithms, whose float32 rounding is larger
        const bool f32 = dt == DType::Float32, lib = be == cuda::Backend::Library;
        const double rtol = f32 ? (lib ? 1e-4 : 2e-5) : 1e-12, atol = rtol;
        CHECK_GPU_CLOSE(yg, y, rtol, atol);
        Tensor go = test::uniform(y.sizes(), dt, g);
        CHECK_GPU_CLOSE(ops::conv2d_backward_input(to_gpu(go), to_gpu(w), x.sizes(), c.p),
                        ops::conv2d_backward_input(go, w, x.sizes(), c.p), rtol, atol);
        const double wtol = f32 ? (lib ? 3e-4 : 1e-4) : 1e-11;  // sums over N * Ho * Wo
        CHECK_GPU_CLOSE(ops::conv2d_backward_weight(to_gpu(go), to_gpu(x), w.sizes(), c.p),
                        ops::conv2d_backward_weight(go, x, w.sizes(), c.p), wtol, wtol);
        CHECK_GPU_CLOSE(ops::conv2d_backward_bias(to_gpu(go)), ops::conv2d_backward_bias(go), 1e-6, 1e-6);
      }
    }
  }
  if (cuda::has_cudnn()) MESSAGE("cuDNN algorithm searches cached: conv shapes x directions above");
}

TEST_CASE("batch norm forward and backward match the CPU in training and eval, both backends") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(32);
  for (cuda::Backend be : test::all_backends()) {
    cuda::BackendGuard guard(cuda::OpFamily::BatchNorm, be);
    for (DType dt : {DType::Float32, DType::Float64}) {
      for (const Shape& s : std::vector<Shape>{{8, 5}, {4, 3, 7, 9}, {2, 64, 16, 16}, {3, 6, 11}, {1, 2, 1, 2}}) {
        for (bool affine : {true, false}) {
          for (bool track : {true, false}) {
            for (double eps : {1e-5, 1e-7}) {  // below cuDNN's minimum 1e-5: the library path falls back
              CAPTURE(cuda::to_string(be));
              CAPTURE(dtype_name(dt));
              CAPTURE(shape_str(s));
              CAPTURE(affine);
              CAPTURE(track);
              CAPTURE(eps);
              const int64_t C = s[1];
              // a large mean over a small spread: the variance must not cancel away
              Tensor x = ops::binary_scalar(ops::BinaryOp::Add, test::uniform(s, dt, g), 50.0);
              Tensor w = affine ? test::uniform({C}, dt, g, 0.5, 1.5) : Tensor();
              Tensor b = affine ? test::uniform({C}, dt, g) : Tensor();
              Tensor rm = track ? test::uniform({C}, dt, g) : Tensor(), rv = track ? test::uniform({C}, dt, g, 0.5, 2) : Tensor();
              Tensor rmg = track ? to_gpu(rm) : Tensor(), rvg = track ? to_gpu(rv) : Tensor();
              auto gpu_or = [](const Tensor& t) { return t.defined() ? to_gpu(t) : t; };
              // cuDNN keeps its sums in float; the hand-written kernels in double, as the CPU
              const bool f32 = dt == DType::Float32, lib = be == cuda::Backend::Library;
              const double rtol = f32 ? (lib ? 5e-4 : 1e-4) : 1e-10, atol = rtol;
              const double sum_tol = f32 ? (lib ? 1e-3 : 1e-4) : 1e-10;  // sums over N * S elements
              for (bool training : {true, false}) {
                if (!training && !track) continue;
                CAPTURE(training);
                auto fc = ops::batch_norm_forward(x, w, b, rm, rv, training, 0.1, eps);
                auto fg = ops::batch_norm_forward(to_gpu(x), gpu_or(w), gpu_or(b), rmg, rvg, training, 0.1, eps);
                CHECK_GPU_CLOSE(fg.out, fc.out, rtol, atol);
                CHECK_GPU_CLOSE(fg.mean, fc.mean, f32 ? 1e-6 : 1e-12, f32 ? 1e-6 : 1e-12);
                CHECK_GPU_CLOSE(fg.invstd, fc.invstd, rtol, atol);
                if (track) {
                  CHECK_GPU_CLOSE(rmg, rm, f32 ? 1e-6 : 1e-12, f32 ? 1e-6 : 1e-12);
                  CHECK_GPU_CLOSE(rvg, rv, sum_tol, sum_tol);
                }
                Tensor go = test::uniform(s, dt, g);
                for (std::array<bool, 3> needs : {std::array<bool, 3>{true, true, true}, std::array<bool, 3>{true, false, false},
                                                  std::array<bool, 3>{false, true, true}}) {
                  if (!affine && (needs[1] || needs[2])) continue;
                  auto gc = ops::batch_norm_backward(go, x, w, fc.mean, fc.invstd, training, needs);
                  auto gg = ops::batch_norm_backward(to_gpu(go), to_gpu(x), gpu_or(w), fg.mean, fg.invstd, training, needs);
                  if (needs[0]) CHECK_GPU_CLOSE(gg.input, gc.input, rtol, atol);
                  if (needs[1]) CHECK_GPU_CLOSE(gg.weight, gc.weight, sum_tol, sum_tol);
                  if (needs[2]) CHECK_GPU_CLOSE(gg.bias, gc.bias, sum_tol, sum_tol);
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("max, avg and adaptive avg pooling, forward and backward, match the CPU's window rules") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(33);
  struct PoolCase {
    Shape s;
    std::array<int64_t, 2> k, st, pad;
    bool ceil, include_pad;
  };
  const std::vector<PoolCase> cases = {
      {{2, 3, 8, 8}, {2, 2}, {0, 0}, {0, 0}, false, true},    {{2, 3, 9, 9}, {3, 3}, {2, 2}, {1, 1}, false, true},
      {{1, 4, 10, 7}, {3, 2}, {2, 1}, {1, 0}, true, true},     {{2, 2, 7, 7}, {3, 3}, {2, 2}, {1, 1}, true, false},
      {{1, 1, 5, 5}, {5, 5}, {1, 1}, {2, 2}, false, false},    {{3, 5, 1, 9}, {1, 3}, {1, 3}, {0, 1}, true, true},
      {{4, 64, 16, 16}, {3, 3}, {2, 2}, {1, 1}, false, true}};
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (const PoolCase& c : cases) {
      Pool2dParams p;
      p.kernel = c.k;
      p.stride = c.st;
      p.padding = c.pad;
      p.ceil_mode = c.ceil;
      p.count_include_pad = c.include_pad;
      CAPTURE(dtype_name(dt));
      CAPTURE(shape_str(c.s));
      CAPTURE(c.k[0]);
      CAPTURE(c.st[0]);
      CAPTURE(c.pad[0]);
      CAPTURE(c.ceil);
      // few distinct values: ties inside the max windows
      Tensor x = test::uniform(c.s, dt, g, 0, 4);
      auto [vc, ic] = ops::max_pool2d_forward(x, p);
      auto [vg, ig] = ops::max_pool2d_forward(to_gpu(x), p);
      CHECK_GPU_CLOSE(vg, vc, 0, 0);
      CHECK_GPU_CLOSE(ig, ic, 0, 0);
      Tensor go = test::uniform(vc.sizes(), dt, g);
      const double tol = dt == DType::Float32 ? 1e-6 : 1e-14;  // overlapping windows: atomics' order
      CHECK_GPU_CLOSE(ops::max_pool2d_backward(to_gpu(go), ig, c.s), ops::max_pool2d_backward(go, ic, c.s), tol, tol);
      Tensor ac = ops::avg_pool2d_forward(x, p), ag = ops::avg_pool2d_forward(to_gpu(x), p);
      CHECK_GPU_CLOSE(ag, ac, 1e-7, 1e-7);
      Tensor go2 = test::uniform(ac.sizes(), dt, g);
      // the gather adds each input's shares in the CPU's order: equal up to the last bit
      CHECK_GPU_CLOSE(ops::avg_pool2d_backward(to_gpu(go2), c.s, p), ops::avg_pool2d_backward(go2, c.s, p), 1e-7, 1e-7);
    }
    for (const auto& [s, out] : std::vector<std::pair<Shape, std::array<int64_t, 2>>>{
             {{2, 3, 7, 7}, {1, 1}}, {{2, 3, 10, 7}, {3, 4}}, {{1, 2, 5, 5}, {7, 9}}, {{4, 64, 7, 7}, {1, 1}}}) {
      CAPTURE(shape_str(s));
      CAPTURE(out[0]);
      CAPTURE(out[1]);
      Tensor x = test::uniform(s, dt, g);
      Tensor yc = ops::adaptive_avg_pool2d_forward(x, out);
      CHECK_GPU_CLOSE(ops::adaptive_avg_pool2d_forward(to_gpu(x), out), yc, 1e-7, 1e-7);
      Tensor go = test::uniform(yc.sizes(), dt, g);
      CHECK_GPU_CLOSE(ops::adaptive_avg_pool2d_backward(to_gpu(go), s), ops::adaptive_avg_pool2d_backward(go, s), 1e-7,
                      1e-7);
    }
  }
  // NaN in a max window: the last NaN wins, as on the CPU
  Tensor n = from_vector<float>({1.f, NAN, 3.f, 4.f, 5.f, NAN, 7.f, 8.f, 9.f}, {1, 1, 3, 3});
  Pool2dParams p;
  p.kernel = {3, 3};
  auto [vc, ic] = ops::max_pool2d_forward(n, p);
  auto [vg, ig] = ops::max_pool2d_forward(to_gpu(n), p);
  CHECK(std::isnan(to_cpu(vg).to_vector<float>()[0]));
  CHECK_GPU_CLOSE(ig, ic, 0, 0);
}

TEST_CASE("cross entropy forward and backward match the CPU with class weights and label smoothing") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(34);
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (const auto& [N, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 3}, {64, 10}, {33, 1000}}) {
      for (bool weighted : {false, true}) {
        for (double ls : {0.0, 0.1}) {
          CAPTURE(dtype_name(dt));
          CAPTURE(N);
          CAPTURE(C);
          CAPTURE(weighted);
          CAPTURE(ls);
          Tensor z = ops::binary_scalar(ops::BinaryOp::Mul, test::uniform({N, C}, dt, g), 4.0);
          Tensor t = test::uniform({N}, DType::Int64, g, 0, static_cast<double>(C));
          Tensor w = weighted ? test::uniform({C}, dt, g, 0.1, 2) : Tensor();
          Tensor wg = weighted ? to_gpu(w) : Tensor();
          const double tol = dt == DType::Float32 ? 1e-6 : 1e-14;  // both in double; output rounding only
          CHECK_GPU_CLOSE(ops::cross_entropy_losses(to_gpu(z), to_gpu(t), wg, ls), ops::cross_entropy_losses(z, t, w, ls),
                          tol, tol);
          Tensor gl = test::uniform({N}, dt, g);
          CHECK_GPU_CLOSE(ops::cross_entropy_backward(to_gpu(gl), to_gpu(z), to_gpu(t), wg, ls),
                          ops::cross_entropy_backward(gl, z, t, w, ls), tol, tol);
        }
      }
    }
  }
  // a target out of range is refused before any kernel runs
  CHECK_THROWS_WITH_AS(ops::cross_entropy_losses(to_gpu(zeros({2, 3})), to_gpu(from_vector<int64_t>({0, 3}, {2})),
                                                 Tensor(), 0.0),
                       doctest::Contains("target 3"), Error);
}
