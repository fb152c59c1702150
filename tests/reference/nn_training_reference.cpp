// A small conv net (Conv2d-BatchNorm2d-ReLU-MaxPool2d-Conv2d(stride 2, groups 2)-BatchNorm2d-ReLU-
// AdaptiveAvgPool2d-Flatten-Dropout(0)-Linear) trained for 20 steps on one fixed batch with SGD
// (nesterov, weight decay, two param groups), Adam, AdamW and Adam(amsgrad), against the same net
// in PyTorch 1.13 (tests/fixtures/make_nn_training.py), from the same initial state_dict: per-step
// losses, the last step's gradients, the final parameters and the BatchNorm running statistics.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>

#include "nn/nn.h"
#include "test_util.h"

using namespace dl;
using namespace dl::nn;

namespace {

constexpr int kSteps = 20;
const char* kGroup = "nn_training";

struct Net : Module {
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<MaxPool2d> pool;
  std::shared_ptr<AdaptiveAvgPool2d> gap;
  std::shared_ptr<Flatten> flatten;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<Linear> fc;
  Net() : Module("Net") {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(Conv2dConfig{.in_channels = 3, .out_channels = 8, .kernel_size = 3, .padding = 1, .bias = false}));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(8));
    relu = register_module("relu", std::make_shared<ReLU>());
    pool = register_module("pool", std::make_shared<MaxPool2d>(2));
    conv2 = register_module("conv2", std::make_shared<Conv2d>(Conv2dConfig{.in_channels = 8, .out_channels = 16, .kernel_size = 3, .stride = 2, .padding = 1, .groups = 2, .bias = false}));
    bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(16));
    gap = register_module("gap", std::make_shared<AdaptiveAvgPool2d>(1));
    flatten = register_module("flatten", std::make_shared<Flatten>());
    drop = register_module("drop", std::make_shared<Dropout>(0.0));
    fc = register_module("fc", std::make_shared<Linear>(16, 5));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = pool->forward(relu->forward(bn1->forward(conv1->forward(x))));  // (N, 8, 6, 6)
    h = relu->forward(bn2->forward(conv2->forward(h)));                      // (N, 16, 3, 3)
    return fc->forward(drop->forward(flatten->forward(gap->forward(h))));   // (N, 5)
  }
};

using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(Net&)>;

// The same optimizers as make_nn_training.py.
std::unique_ptr<optim::Optimizer> make_sgd(Net& net) {
  std::vector<Tensor> decay, no_decay;
  for (auto& [name, p] : net.named_parameters()) {
    bool is_weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    (is_weight && name.find("bn") == std::string::npos ? decay : no_decay).push_back(p);
  }
  return std::make_unique<optim::SGD>(
      std::vector<optim::ParamGroupSpec>{{decay, {}}, {no_decay, {.lr = 0.025, .weight_decay = 0.0}}},
      optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
}
std::unique_ptr<optim::Optimizer> make_adam(Net& net) {
  return std::make_unique<optim::Adam>(net.parameters(), optim::AdamOptions{.lr = 0.01});
}
std::unique_ptr<optim::Optimizer> make_adamw(Net& net) {
  return std::make_unique<optim::AdamW>(net.parameters(), optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.05});
}
std::unique_ptr<optim::Optimizer> make_amsgrad(Net& net) {
  return std::make_unique<optim::Adam>(
      net.parameters(), optim::AdamOptions{.lr = 0.005, .betas = {0.8, 0.99}, .weight_decay = 1e-3, .amsgrad = true});
}

// Tolerances, by what is judged, relative to the size of the expected tensor:
// |a - b| <= rtol * |b| + atol_scale * max|b|. The float32 runs differ from PyTorch by summation
// order in conv/BN/GEMM, compounded over 20 steps through the batch statistics. Seen when they
// were set: losses 2.3e-7 relative; gradients, parameters and BN statistics at most 3.9e-6 of
// their tensor's largest element (4.4e-4 relative on near-zero elements). float64: 1e-12 and
// 5e-14. The bounds leave a margin of 10-200x.
struct Tolerance {
  double loss_rtol, rtol, atol_scale;
};
constexpr Tolerance kFloat32{5e-6, 1e-4, 5e-5};
constexpr Tolerance kFloat64{1e-11, 1e-9, 1e-11};

// Worst |a - b| / max(|b|, 1e-3 max|b|): the relative difference, floored for tiny elements.
double worst_relative(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double scale = 0, worst = 0;
  for (double v : vb) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < va.size(); ++i)
    worst = std::max(worst, std::abs(va[i] - vb[i]) / std::max({std::abs(vb[i]), 1e-3 * scale, 1e-30}));
  return worst;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

void run(const std::string& run_name, const MakeOpt& make, DType dtype, const Tolerance& tol) {
  Tensor x = test::fixture(kGroup, "x").to(dtype);
  Tensor y = test::fixture(kGroup, "y");
  Net net;
  StateDict init;
  for (auto& [key, t] : net.state_dict()) init.emplace_back(key, test::fixture(kGroup, "init." + key));
  REQUIRE(net.load_state_dict(init).ok());
  net.to(dtype);
  auto opt = make(net);

  double worst = 0;
  std::vector<double> losses;
  for (int s = 0; s < kSteps; ++s) {
    opt->zero_grad();
    Tensor loss = cross_entropy(net.forward(x), y);
    loss.backward();
    losses.push_back(loss.item<double>());
    opt->step();
  }
  Tensor expected_loss = test::fixture(kGroup, run_name + ".loss");
  Tensor got_loss = from_vector<double>(losses, {kSteps});
  {
    INFO(run_name, ": per-step loss");
    CHECK_CLOSE(got_loss, expected_loss, tol.loss_rtol, 0.0);
    worst = std::max(worst, worst_relative(got_loss, expected_loss));
  }
  CHECK(losses.back() < 0.7 * losses.front());  // it did learn
  for (auto& [name, p] : net.named_parameters()) {
    Tensor eg = test::fixture(kGroup, run_name + ".grad." + name);
    INFO(run_name, ": gradient of ", name, " at the last step");
    REQUIRE(p.grad().defined());
    CHECK(p.grad().dtype() == dtype);
    CHECK_CLOSE(p.grad(), eg, tol.rtol, tol.atol_scale * max_abs(eg));
    worst = std::max(worst, worst_relative(p.grad(), eg));
  }
  for (auto& [key, t] : net.state_dict()) {
    Tensor e = test::fixture(kGroup, run_name + ".state." + key);
    INFO(run_name, ": final ", key);
    if (t.dtype() == DType::Int64) {
      CHECK(t.item<int64_t>() == kSteps);  // num_batches_tracked
      CHECK(e.item<int64_t>() == kSteps);
      continue;
    }
    CHECK(t.dtype() == dtype);
    CHECK_CLOSE(t, e, tol.rtol, tol.atol_scale * max_abs(e));
    worst = std::max(worst, worst_relative(t, e));
  }
  MESSAGE(run_name, ": largest relative difference vs PyTorch (losses, gradients, parameters, BN statistics): ", worst);
}

}  // namespace

TEST_CASE("reference: conv net, SGD (nesterov, weight decay, two param groups), float32") {
  run("sgd", make_sgd, DType::Float32, kFloat32);
}
TEST_CASE("reference: conv net, Adam, float32") { run("adam", make_adam, DType::Float32, kFloat32); }
TEST_CASE("reference: conv net, AdamW, float32") { run("adamw", make_adamw, DType::Float32, kFloat32); }
TEST_CASE("reference: conv net, Adam with amsgrad and L2 decay, float32") {
  run("adam_amsgrad", make_amsgrad, DType::Float32, kFloat32);
}
TEST_CASE("reference: conv net, all optimizers, float64") {
  run("sgd_f64", make_sgd, DType::Float64, kFloat64);
  run("adam_f64", make_adam, DType::Float64, kFloat64);
  run("adamw_f64", make_adamw, DType::Float64, kFloat64);
  run("adam_amsgrad_f64", make_amsgrad, DType::Float64, kFloat64);
}
