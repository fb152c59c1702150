// float32 forward and backward of the NN functions (conv2d, linear, batch_norm, pools,
// cross_entropy) against PyTorch 1.13, plus batch_norm's updated running statistics. Fixtures:
// tests/fixtures/make_nn_functional.py (case prefixes as written there). Dropout's mask cannot
// match PyTorch's generator; its semantics are tested in tests/unit/nn_functional_test.cpp.
#include <functional>
#include <map>

#include "autograd/functional.h"
#include "test_util.h"

using namespace dl;

namespace {
using Inputs = std::map<std::string, Tensor>;

Tensor fx(const std::string& name, const std::string& key) { return test::fixture("nn_functional", name + "." + key); }

// Largest difference seen in one test case, relative to the largest |value| of the tensor it
// was seen in (so near-zero elements of a sum do not dominate), reported at the case's end.
struct Worst {
  double rel = 0;
  std::string where;
  void see(const Tensor& a, const Tensor& b, const std::string& what) {
    auto a64 = a.to_vector<double>(), b64 = b.to_vector<double>();
    double diff = 0, scale = 0;
    for (size_t i = 0; i < a64.size() && i < b64.size(); ++i) {
      diff = std::max(diff, std::abs(a64[i] - b64[i]));
      scale = std::max(scale, std::abs(b64[i]));
    }
    double r = scale > 0 ? diff / scale : diff;
    if (r > rel) rel = r, where = what;
  }
  ~Worst() { MESSAGE(fmt::format("largest difference vs PyTorch, relative to the tensor's scale: {:.3g} ({})", rel, where)); }
};

// Loads the case's inputs (those named in `grad_inputs` require grad), runs fn, and checks the
// output and every input gradient against PyTorch with |a - b| <= atol + rtol |b|.
void compare(Worst& worst, const std::string& name, const std::vector<std::string>& grad_inputs,
             const std::function<Tensor(Inputs&)>& fn, double rtol, double atol) {
  Inputs in;
  for (const auto& k : grad_inputs) in[k] = fx(name, k).requires_grad_();
  Tensor y = fn(in);
  INFO("case ", name, ": output");
  Tensor expected = fx(name, "out");
  CHECK_CLOSE(y, expected, rtol, atol);
  worst.see(y, expected, name + ".out");
  y.backward(fx(name, "gout"));
  for (const auto& k : grad_inputs) {
    INFO("case ", name, ": gradient of ", k);
    Tensor g = fx(name, "grad_" + k);
    REQUIRE(in[k].grad().defined());
    CHECK_CLOSE(in[k].grad(), g, rtol, atol);
    worst.see(in[k].grad(), g, name + ".grad_" + k);
  }
}
}  // namespace

TEST_CASE("reference: conv2d (padding, stride, dilation, groups, depthwise, 1x1, 7x7 stem)") {
  Worst worst;
  // Weight gradients sum N * Ho * Wo products of O(1) values (up to 784 here): float32 rounding
  // in PyTorch's summation order reaches ~1e-5 absolute on elements that nearly cancel.
  struct C {
    const char* name;
    Conv2dParams opt;
    bool bias;
    double atol;
  };
  const C cases[] = {
      {"conv_basic", {{1, 1}, {1, 1}, {1, 1}, 1}, true, 1e-5},
      {"conv_single_image", {}, true, 1e-5},
      {"conv_stride_pad_dilation", {{2, 1}, {1, 2}, {2, 1}, 1}, true, 1e-5},
      {"conv_groups", {{2, 2}, {0, 0}, {1, 1}, 3}, false, 1e-5},
      {"conv_depthwise", {{1, 1}, {1, 1}, {1, 1}, 4}, true, 1e-5},
      {"conv_1x1", {}, true, 1e-5},
      {"conv_1x1_stride2", {{2, 2}, {0, 0}, {1, 1}, 1}, false, 1e-5},
      {"conv_7x7_stride2", {{2, 2}, {3, 3}, {1, 1}, 1}, false, 2e-5},
      {"conv_cnn_block", {{1, 1}, {1, 1}, {1, 1}, 1}, true, 5e-5},
  };
  for (const auto& c : cases) {
    std::vector<std::string> keys{"x", "w"};
    if (c.bias) keys.push_back("b");
    compare(worst, c.name, keys,
            [&](Inputs& in) { return conv2d(in["x"], in["w"], c.bias ? in["b"] : Tensor(), c.opt); }, 1e-4, c.atol);
  }
}

TEST_CASE("reference: linear (with and without bias, 3-D input)") {
  Worst worst;
  compare(worst, "linear", {"x", "w", "b"}, [](Inputs& in) { return linear(in["x"], in["w"], in["b"]); }, 1e-5, 1e-5);
  compare(worst, "linear_no_bias", {"x", "w"}, [](Inputs& in) { return linear(in["x"], in["w"]); }, 1e-5, 1e-5);
  compare(worst, "linear_3d", {"x", "w", "b"}, [](Inputs& in) { return linear(in["x"], in["w"], in["b"]); }, 1e-5,
          1e-5);
}

TEST_CASE("reference: batch_norm (training updates running stats; eval uses them)") {
  Worst worst;
  struct C {
    const char* name;
    bool affine, training;
    double momentum, eps;
  };
  const C cases[] = {
      {"bn_train_4d", true, true, 0.1, 1e-5},
      {"bn_train_2d", true, true, 0.25, 1e-5},
      {"bn_train_no_affine", false, true, 0.3, 1e-3},
      {"bn_eval_4d", true, false, 0.1, 1e-5},
      {"bn_eval_2d", true, false, 0.1, 1e-5},
  };
  for (const auto& c : cases) {
    std::vector<std::string> keys{"x"};
    if (c.affine) keys.insert(keys.end(), {"w", "b"});
    Tensor rm = fx(c.name, "running_mean"), rv = fx(c.name, "running_var");
    // normalised values are O(1); their gradients pass through 1/std and sums over the batch
    compare(worst, c.name, keys, [&](Inputs& in) {
      return batch_norm(in["x"], rm, rv, c.affine ? in["w"] : Tensor(), c.affine ? in["b"] : Tensor(), c.training,
                        c.momentum, c.eps);
    }, 1e-4, 1e-5);
    INFO("case ", c.name, ": running statistics after the call");
    Tensor rm_after = fx(c.name, "running_mean_after"), rv_after = fx(c.name, "running_var_after");
    CHECK_CLOSE(rm, rm_after, 1e-6, 1e-7);
    CHECK_CLOSE(rv, rv_after, 1e-6, 1e-7);
    worst.see(rm, rm_after, std::string(c.name) + ".running_mean");
    worst.see(rv, rv_after, std::string(c.name) + ".running_var");
    if (!c.training) CHECK(max_difference(rm, fx(c.name, "running_mean")).abs_diff == 0.0);
  }
}

TEST_CASE("reference: max_pool2d (padding, ceil_mode incl. the last-window rule, rectangular)") {
  Worst worst;
  auto run = [&](const char* name, Pool2dParams opt) {
    // values are copies; a gradient sums up to 4 overlapping windows, in any order
    compare(worst, name, {"x"}, [&](Inputs& in) { return max_pool2d(in["x"], opt); }, 1e-6, 1e-7);
  };
  run("maxpool_2x2", {{2, 2}});
  run("maxpool_resnet", {{3, 3}, {2, 2}, {1, 1}});
  run("maxpool_ceil", {{3, 3}, {2, 2}, {0, 0}, true});
  run("maxpool_ceil_last_window", {{2, 2}, {2, 2}, {1, 1}, true});
  run("maxpool_rect", {{3, 2}, {2, 1}, {1, 0}});
}

TEST_CASE("reference: avg_pool2d (count_include_pad, ceil_mode)") {
  Worst worst;
  auto run = [&](const char* name, Pool2dParams opt) {
    compare(worst, name, {"x"}, [&](Inputs& in) { return avg_pool2d(in["x"], opt); }, 1e-5, 1e-6);
  };
  run("avgpool_2x2", {{2, 2}});
  run("avgpool_pad_include", {{3, 3}, {2, 2}, {1, 1}});
  run("avgpool_pad_exclude", {{3, 3}, {2, 2}, {1, 1}, false, false});
  run("avgpool_ceil_include", {{3, 3}, {2, 2}, {0, 0}, true});
  run("avgpool_ceil_pad_include", {{3, 3}, {2, 2}, {1, 1}, true});
  run("avgpool_ceil_pad_exclude", {{3, 3}, {2, 2}, {1, 1}, true, false});
}

TEST_CASE("reference: adaptive_avg_pool2d (sizes that do not divide, global, upsampling)") {
  Worst worst;
  auto run = [&](const char* name, std::array<int64_t, 2> size) {
    compare(worst, name, {"x"}, [&](Inputs& in) { return adaptive_avg_pool2d(in["x"], size); }, 1e-5, 1e-6);
  };
  run("adaptive_3x2", {3, 2});
  run("adaptive_4x4_of_10", {4, 4});
  run("adaptive_global", {1, 1});
  run("adaptive_upsample", {5, 4});
}

TEST_CASE("reference: cross_entropy (mean/sum/none, class weights, label smoothing)") {
  Worst worst;
  struct C {
    const char* name;
    Reduction red;
    double ls;
    bool weighted;
  };
  const C cases[] = {
      {"ce_mean", Reduction::Mean, 0.0, false},
      {"ce_sum", Reduction::Sum, 0.0, false},
      {"ce_none", Reduction::None, 0.0, false},
      {"ce_weight_mean", Reduction::Mean, 0.0, true},
      {"ce_weight_none", Reduction::None, 0.0, true},
      {"ce_smooth_mean", Reduction::Mean, 0.1, false},
      {"ce_smooth_weight_mean", Reduction::Mean, 0.2, true},
      {"ce_smooth_weight_sum", Reduction::Sum, 0.3, true},
      {"ce_smooth_weight_none", Reduction::None, 0.15, true},
  };
  for (const auto& c : cases) {
    Tensor target = fx(c.name, "target");
    CrossEntropyOptions opt;
    opt.reduction = c.red;
    opt.label_smoothing = c.ls;
    if (c.weighted) opt.weight = fx(c.name, "weight");
    compare(worst, c.name, {"x"}, [&](Inputs& in) { return cross_entropy(in["x"], target, opt); }, 1e-5, 1e-6);
  }
}
