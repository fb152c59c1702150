// Semantics of the NN functions (autograd/functional.h): conv2d against a direct loop
// over every code path (im2col, 1x1, groups, batch- or GEMM-threaded), batch_norm train vs eval
// and its running statistics, pooling window rules, dropout statistics and train/eval, cross
// entropy's reductions. Their error messages are checked by the op-case table
// (tests/op_cases/op_table.cpp, run by unit/op_cases_errors_test.cpp).
#include <cmath>

#include "autograd/functional.h"
#include "tensor/nn_ops.h"
#include "test_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace dl;

namespace {
Tensor uniform(const Shape& s, uint64_t seed, DType dt = DType::Float64, double lo = -1.0, double hi = 1.0) {
  Generator g(seed);
  return (rand(s, dt, &g) * (hi - lo) + lo).detach();
}

// The definition of a convolution, as loops, in double.
Tensor direct_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& o) {
  auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>();
  int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  int64_t O = w.size(0), Cg = w.size(1), kh = w.size(2), kw = w.size(3), G = o.groups, Og = O / G;
  int64_t Ho = (H + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
  int64_t Wo = (W + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
  std::vector<double> out(N * O * Ho * Wo);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double s = bv.empty() ? 0.0 : bv[oc];
          int64_t g = oc / Og;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
                int64_t iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += xv[((n * C + g * Cg + c) * H + ih) * W + iw] * wv[((oc * Cg + c) * kh + i) * kw + j];
              }
          out[((n * O + oc) * Ho + oh) * Wo + ow] = s;
        }
  return from_vector<double>(out, {N, O, Ho, Wo});
}

// Runs f with OpenMP limited to `threads` (restored after).
template <typename F>
void with_threads(int threads, F f) {
#ifdef _OPENMP
  int prev = omp_get_max_threads();
  omp_set_num_threads(threads);
  f();
  omp_set_num_threads(prev);
#else
  (void)threads;
  f();
#endif
}
}  // namespace

// ---- conv2d ------------------------------------------------------------------------------------

TEST_CASE("conv2d equals the direct definition on every path (im2col, 1x1, groups, threads)") {
  struct C {
    Shape x, w;
    Conv2dParams opt;
    bool bias;
  };
  const C cases[] = {
      {{4, 3, 9, 8}, {5, 3, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, true},
      {{3, 4, 11, 10}, {6, 4, 3, 2}, {{2, 3}, {2, 1}, {2, 3}, 1}, true},
      {{5, 6, 7, 7}, {4, 3, 3, 3}, {{1, 2}, {0, 1}, {1, 1}, 2}, false},
      {{2, 4, 6, 6}, {4, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 4}, true},
      {{3, 8, 5, 6}, {4, 8, 1, 1}, {}, true},
      {{3, 8, 5, 6}, {4, 4, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 2}, false},
      {{2, 8, 7, 7}, {4, 8, 1, 1}, {{2, 2}, {0, 0}, {1, 1}, 1}, false},
      {{2, 3, 16, 16}, {4, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}, 1}, false},
      // stride 1 with output width == input width: im2col's shifted-row copy
      {{2, 3, 7, 6}, {4, 3, 3, 3}, {{1, 1}, {2, 2}, {2, 2}, 1}, true},
      {{2, 2, 5, 6}, {3, 2, 3, 5}, {{1, 1}, {0, 2}, {1, 1}, 1}, false},
      {{1, 2, 2, 5}, {2, 2, 5, 3}, {{1, 1}, {2, 1}, {1, 1}, 1}, true},
      {{3, 2, 6, 1}, {2, 2, 3, 1}, {{1, 1}, {1, 0}, {1, 1}, 1}, false},
      {{2, 2, 4, 1}, {2, 2, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, true},
      {{1, 1, 2, 1}, {1, 1, 1, 3}, {{1, 1}, {0, 5}, {1, 5}, 1}, false},  // padding wider than the input
  };
  for (int threads : {1, 2, 3}) {
    for (size_t i = 0; i < std::size(cases); ++i) {
      const C& c = cases[i];
      Tensor x = uniform(c.x, 10 + i), w = uniform(c.w, 20 + i), b = c.bias ? uniform({c.w[0]}, 30 + i) : Tensor();
      Tensor expected = direct_conv(x, w, b, c.opt);
      INFO("case ", i, " with ", threads, " threads");
      with_threads(threads, [&] {
        CHECK_CLOSE(conv2d(x, w, b, c.opt), expected, 1e-12, 1e-12);
        // float32 on the same data: rounding only
        Tensor y32 = conv2d(x.to(DType::Float32), w.to(DType::Float32), c.bias ? b.to(DType::Float32) : Tensor(), c.opt);
        CHECK(y32.dtype() == DType::Float32);
        CHECK_CLOSE(y32, expected, 1e-5, 1e-5);
      });
    }
  }
}

TEST_CASE("conv2d: the weight gradient summed over images does not depend on the thread count") {
  Tensor x = uniform({5, 3, 6, 6}, 1), w = uniform({4, 3, 3, 3}, 2), g = uniform({5, 4, 6, 6}, 3);
  Conv2dParams p{{1, 1}, {1, 1}, {1, 1}, 1};
  Tensor one, three;
  with_threads(1, [&] { one = ops::conv2d_backward_weight(g, x, w.sizes(), p); });
  with_threads(3, [&] { three = ops::conv2d_backward_weight(g, x, w.sizes(), p); });
  CHECK_CLOSE(three, one, 1e-12, 1e-12);
}

TEST_CASE("conv2d: an unbatched (C, H, W) input gives the batch-of-one result without the batch dim") {
  Tensor x = uniform({2, 5, 4}, 1), w = uniform({3, 2, 3, 3}, 2);
  Tensor y = conv2d(x, w, Tensor(), {{1, 1}, {1, 1}});
  CHECK(y.sizes() == Shape{3, 5, 4});
  CHECK_CLOSE(y, conv2d(x.unsqueeze(0), w, Tensor(), {{1, 1}, {1, 1}}).squeeze(0), 0.0, 0.0);
}

// conv2d's error messages are checked by the op-case table (tests/op_cases/op_table.cpp, conv_basic).
TEST_CASE("conv2d: a kernel as large as the padded input is allowed") {
  CHECK_NOTHROW(conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 5, 5}), Tensor(), {{1, 1}, {1, 1}}));
}

TEST_CASE("conv2d: gradients are computed only for inputs that need them") {
  Tensor x = uniform({2, 2, 5, 5}, 1).requires_grad_(), w = uniform({3, 2, 3, 3}, 2), b = uniform({3}, 3);
  conv2d(x, w, b).sum().backward();
  CHECK(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  Tensor w2 = uniform({3, 2, 3, 3}, 4).requires_grad_();
  conv2d(uniform({2, 2, 5, 5}, 5), w2).sum().backward();
  CHECK(w2.grad().defined());
}

// ---- linear ------------------------------------------------------------------------------------

// linear's error messages: the op-case table (tests/op_cases/op_table.cpp, linear).
TEST_CASE("linear: x @ W^T + b") {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = from_vector<double>({1, 0, 0, 0, 1, 1}, {2, 3});
  Tensor b = from_vector<double>({10, 20}, {2});
  CHECK_CLOSE(linear(x, w, b), from_vector<double>({11, 25, 14, 31}, {2, 2}), 0.0, 0.0);
}

// ---- batch norm --------------------------------------------------------------------------------

TEST_CASE("batch_norm training: batch statistics normalise, running stats move by momentum with the unbiased variance") {
  Tensor x = uniform({4, 2, 3, 3}, 1, DType::Float64, -1.0, 3.0);
  Tensor rm = from_vector<double>({0.5, -0.5}, {2}), rv = from_vector<double>({2.0, 0.5}, {2});
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.2, 1e-5);
  // each channel of the output: mean 0, biased variance 1 / (1 + eps / var)
  for (int64_t c = 0; c < 2; ++c) {
    Tensor xc = x.select(1, c), yc = y.select(1, c);
    double mean = xc.mean().item<double>();
    double var_b = xc.var({0, 1, 2}, false).item<double>();
    double var_u = xc.var({0, 1, 2}, true).item<double>();
    CHECK(std::abs(yc.mean().item<double>()) < 1e-12);
    CHECK(yc.var({0, 1, 2}, false).item<double>() == doctest::Approx(var_b / (var_b + 1e-5)).epsilon(1e-12));
    double rm0 = c == 0 ? 0.5 : -0.5, rv0 = c == 0 ? 2.0 : 0.5;
    CHECK(rm.at<double>({c}) == doctest::Approx(0.8 * rm0 + 0.2 * mean).epsilon(1e-12));
    CHECK(rv.at<double>({c}) == doctest::Approx(0.8 * rv0 + 0.2 * var_u).epsilon(1e-12));
  }
}

TEST_CASE("batch_norm: running statistics that are strided views are updated in place") {
  Tensor x = uniform({5, 2}, 4);
  Tensor store = zeros({2, 2}, DType::Float64);  // running_mean = column 0, running_var = column 1
  store.select(1, 1).fill_(1.0);
  Tensor rm = store.select(1, 0), rv = store.select(1, 1);
  REQUIRE_FALSE(rm.is_contiguous());
  batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.5);
  CHECK_CLOSE(store.select(1, 0), x.mean({0}) * 0.5, 1e-12, 1e-12);
  CHECK_CLOSE(store.select(1, 1), x.var({0}) * 0.5 + 0.5, 1e-12, 1e-12);
}

TEST_CASE("batch_norm eval: uses the running statistics and leaves them unchanged") {
  Tensor x = uniform({3, 2, 2, 2}, 2);
  Tensor rm = from_vector<double>({0.5, -0.5}, {2}), rv = from_vector<double>({2.0, 0.5}, {2});
  Tensor w = from_vector<double>({2.0, 3.0}, {2}), b = from_vector<double>({0.1, -0.1}, {2});
  Tensor y = batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5);
  Tensor expected = (x - rm.view({1, 2, 1, 1})) / (rv.view({1, 2, 1, 1}) + 1e-5).sqrt() * w.view({1, 2, 1, 1}) +
                    b.view({1, 2, 1, 1});
  CHECK_CLOSE(y, expected, 1e-12, 1e-12);
  CHECK(rm.to_vector<double>() == std::vector<double>{0.5, -0.5});
  CHECK(rv.to_vector<double>() == std::vector<double>{2.0, 0.5});
  // training on the same input differs (batch statistics)
  Tensor rm2 = rm.clone(), rv2 = rv.clone();
  CHECK(max_difference(batch_norm(x, rm2, rv2, w, b, true), y).abs_diff > 0.1);
}

TEST_CASE("batch_norm: a large common offset does not cancel the variance (float32)") {
  Tensor x = (uniform({8, 3, 4, 4}, 3, DType::Float32) + 1000.0).detach();
  Tensor y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true);
  Tensor y_ref = batch_norm(x.to(DType::Float64), Tensor(), Tensor(), Tensor(), Tensor(), true);
  CHECK_CLOSE(y, y_ref, 1e-3, 1e-3);
}

// batch_norm's error messages: the op-case table (tests/op_cases/op_table.cpp, bn_train_4d).
TEST_CASE("batch_norm: one value per channel is allowed in eval mode") {
  CHECK_NOTHROW(batch_norm(zeros({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), false));
}

// ---- pooling -----------------------------------------------------------------------------------

TEST_CASE("pool output sizes follow PyTorch, incl. ceil_mode's last-window rule") {
  CHECK(ops::pool_output_size(8, 2, 2, 0, false) == 4);
  CHECK(ops::pool_output_size(7, 2, 2, 0, false) == 3);
  CHECK(ops::pool_output_size(7, 2, 2, 0, true) == 4);
  CHECK(ops::pool_output_size(112, 3, 2, 1, false) == 56);
  // ceil would give 4 windows, but the 4th would start at 6 >= 5 + 1 (in the right padding)
  CHECK(ops::pool_output_size(5, 2, 2, 1, true) == 3);
  CHECK(ops::pool_output_size(6, 2, 2, 1, true) == 4);
  CHECK(max_pool2d(zeros({1, 1, 5, 5}), {{2, 2}, {2, 2}, {1, 1}, true}).sizes() == Shape{1, 1, 3, 3});
}

TEST_CASE("max_pool2d pads with -inf, propagates NaN and routes the gradient to the argmax") {
  Tensor x = from_vector<double>({-1, -2, -3, -4, -5, -6, -7, -8, -9}, {1, 1, 3, 3}).requires_grad_();
  Tensor y = max_pool2d(x, {{3, 3}, {2, 2}, {1, 1}});  // a zero padding would win every window
  CHECK(y.to_vector<double>() == std::vector<double>{-1, -2, -4, -5});
  y.sum().backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1, 0, 1, 1, 0, 0, 0, 0});
  // overlapping windows that share a maximum add their gradients there
  Tensor z = from_vector<double>({0, 0, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}).requires_grad_();
  max_pool2d(z, {{2, 2}, {1, 1}}).sum().backward();
  CHECK(z.grad().at<double>({0, 0, 1, 1}) == 4.0);
  Tensor n = from_vector<double>({1, NAN, 3, 4}, {1, 1, 2, 2});
  CHECK(std::isnan(max_pool2d(n, {{2, 2}}).item<double>()));
}

TEST_CASE("avg_pool2d: count_include_pad decides the divisor at the border") {
  Tensor x = ones({1, 1, 4, 4}, DType::Float64);
  Tensor inc = avg_pool2d(x, {{3, 3}, {2, 2}, {1, 1}, false, true});
  Tensor exc = avg_pool2d(x, {{3, 3}, {2, 2}, {1, 1}, false, false});
  CHECK(inc.at<double>({0, 0, 0, 0}) == doctest::Approx(4.0 / 9.0));
  CHECK(exc.at<double>({0, 0, 0, 0}) == doctest::Approx(1.0));
  CHECK(inc.at<double>({0, 0, 1, 1}) == doctest::Approx(1.0));
  // ceil_mode's extra window starts at 5 and is clipped at H + pad = 7: the padded count is 2x2
  Tensor ceil = avg_pool2d(ones({1, 1, 6, 6}, DType::Float64), {{3, 3}, {2, 2}, {1, 1}, true, true});
  CHECK(ceil.sizes() == Shape{1, 1, 4, 4});
  CHECK(ceil.at<double>({0, 0, 3, 3}) == doctest::Approx(1.0 / 4.0));
}

TEST_CASE("adaptive_avg_pool2d windows: floor(i*In/Out) to ceil((i+1)*In/Out)") {
  // In = 5, Out = 3: rows [0, 2), [1, 4), [3, 5)
  Tensor x = from_vector<double>({1, 2, 3, 4, 5}, {1, 1, 5, 1});
  Tensor y = adaptive_avg_pool2d(x, {3, 1});
  CHECK(y.to_vector<double>() == std::vector<double>{1.5, 3.0, 4.5});
  CHECK(adaptive_avg_pool2d(zeros({2, 3, 7, 7}), {1, 1}).sizes() == Shape{2, 3, 1, 1});
  CHECK(adaptive_avg_pool2d(zeros({3, 7, 7}), {2, 2}).sizes() == Shape{3, 2, 2});
}

// pooling's error messages: the op-case table (tests/op_cases/op_table.cpp, maxpool_2x2, avgpool_2x2,
// adaptive_3x2).

// ---- dropout -----------------------------------------------------------------------------------

TEST_CASE("dropout: zeroes about p of the elements, scales the rest by 1/(1-p), keeps the mean") {
  const int64_t n = 200000;
  const double p = 0.3;
  Generator gen(7);
  Tensor x = ones({n});
  auto v = dropout(x, p, true, &gen).to_vector<float>();
  int64_t zeros_count = 0, other = 0;
  double sum = 0;
  const float kept = static_cast<float>(1.0 / (1.0 - p));
  for (float e : v) {
    if (e == 0.0f) {
      ++zeros_count;
    } else if (e != kept) {
      ++other;
    }
    sum += e;
  }
  CHECK(other == 0);  // every kept element is scaled by exactly 1/(1-p)
  // binomial: sd of the zero fraction is sqrt(p(1-p)/n) ~ 0.001; 5 sd bounds
  CHECK(std::abs(static_cast<double>(zeros_count) / n - p) < 0.0052);
  CHECK(std::abs(sum / n - 1.0) < 0.0075);
}

// p outside [0, 1]: the op-case table (tests/op_cases/op_table.cpp, dropout).
TEST_CASE("dropout: seeds fix the mask, eval and p=0 are the identity, p=1 gives zeros") {
  Tensor x = uniform({50}, 1);
  Generator g1(3), g2(3), g3(4);
  Tensor a = dropout(x, 0.5, true, &g1), b = dropout(x, 0.5, true, &g2), c = dropout(x, 0.5, true, &g3);
  CHECK(max_difference(a, b).abs_diff == 0.0);
  CHECK(max_difference(a, c).abs_diff > 0.0);
  manual_seed(11);
  Tensor d1 = dropout(x, 0.5, true);
  manual_seed(11);
  Tensor d2 = dropout(x, 0.5, true);
  CHECK(max_difference(d1, d2).abs_diff == 0.0);
  CHECK(dropout(x, 0.5, false).is_same(x));
  CHECK(max_difference(dropout(x, 0.0, true), x).abs_diff == 0.0);
  CHECK(dropout(x, 1.0, true).abs().sum().item<double>() == 0.0);
}

TEST_CASE("dropout: the gradient is the same mask") {
  Tensor x = uniform({40}, 2).requires_grad_();
  Generator g(5);
  Tensor y = dropout(x, 0.4, true, &g);
  y.sum().backward();
  auto yv = y.to_vector<double>(), xv = x.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) CHECK(gv[i] * xv[i] == doctest::Approx(yv[i]));
}

// ---- cross entropy -----------------------------------------------------------------------------

TEST_CASE("cross_entropy: values of the reductions, class weights and label smoothing") {
  Tensor logits = uniform({4, 3}, 1, DType::Float64, -2.0, 2.0);
  Tensor target = from_vector<int64_t>({2, 0, 1, 2}, {4});
  Tensor w = from_vector<double>({0.5, 1.0, 2.0}, {3});
  Tensor logp = logits.log_softmax(1);
  Tensor nll = logp.gather(1, target.view({4, 1})).view({4}).neg();
  CrossEntropyOptions none;
  none.reduction = Reduction::None;
  CHECK_CLOSE(cross_entropy(logits, target, none), nll, 1e-12, 1e-12);
  CHECK(cross_entropy(logits, target).item<double>() == doctest::Approx(nll.mean().item<double>()).epsilon(1e-12));
  // weighted mean = sum(w_y * loss) / sum(w_y)
  CrossEntropyOptions wm;
  wm.weight = w;
  Tensor wy = w.index_select(0, target);
  CHECK(cross_entropy(logits, target, wm).item<double>() ==
        doctest::Approx(((wy * nll).sum() / wy.sum()).item<double>()).epsilon(1e-12));
  // smoothing 1.0 with weights: -(sum_c w_c logp_c) / C per sample, mean over sum(w_y)
  CrossEntropyOptions sm;
  sm.weight = w;
  sm.label_smoothing = 1.0;
  Tensor smooth = (logp * w.view({1, 3})).sum({1}).neg() / 3.0;
  CHECK(cross_entropy(logits, target, sm).item<double>() ==
        doctest::Approx((smooth.sum() / wy.sum()).item<double>()).epsilon(1e-12));
  // uniform logits: log(C) whatever the target
  CHECK(cross_entropy(zeros({2, 5}), from_vector<int64_t>({1, 4}, {2})).item<float>() == doctest::Approx(std::log(5.0)));
}

// cross_entropy's error messages: the op-case table (tests/op_cases/op_table.cpp, ce_mean).
