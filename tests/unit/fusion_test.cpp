// Fusion as a framework feature (nn::Sequential, nn/layers.h): a BatchNorm2d followed by a ReLU
// runs as one fused pass, and for inference a Conv2d, its BatchNorm2d, a shortcut and a ReLU run as one
// convolution (BatchNorm2d::forward_conv). Fused and unfused runs of the same model must give the same numbers
// (forward, every gradient, running statistics) and the same state_dict keys; a model edited so
// that the pair is no longer adjacent, or whose ReLU is replaced, must still compute its own math.
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "nn/layers.h"
#include "tensor/autocast.h"
#include "tensor/dispatch.h"
#include "test_util.h"

using namespace dl;

namespace {
// How many nodes of each name the graph below `t` holds (each node once).
std::multiset<std::string> node_names(const Tensor& t) {
  std::multiset<std::string> names;
  std::set<const autograd::Node*> seen;
  std::vector<autograd::Node*> stack;
  if (t.grad_fn()) stack.push_back(t.grad_fn().get());
  while (!stack.empty()) {
    autograd::Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    names.insert(n->name());
    for (const auto& e : n->next_edges)
      if (e.valid()) stack.push_back(e.fn.get());
  }
  return names;
}

std::vector<std::string> keys(const nn::Module& m) {
  std::vector<std::string> k;
  for (const auto& [name, t] : m.state_dict()) k.push_back(name);
  return k;
}

// Tolerances of the fused-vs-unfused comparison. The fused kernel does the same arithmetic as batch
// norm followed by ReLU (same centring, scale and offset, then max(v, 0)), so the two agree to
// rounding at most: float64 tightly, float32 within a few ulps of the values involved.
struct Tol {
  double rtol, atol;
};
Tol tolerance(DType dt) { return dt == DType::Float64 ? Tol{1e-12, 1e-12} : Tol{1e-5, 1e-6}; }
}  // namespace

TEST_CASE("the scratch CNN fused and unfused: the same forward, gradients, running stats and keys") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype ", dtype_name(dt));
    const Tol tol = tolerance(dt);
    manual_seed(7);
    models::ScratchCnnConfig cfg{.channels = {4, 6, 8, 8}, .dropout = 0.0};
    models::ScratchCnn fused(cfg), plain(cfg);
    plain.load_state_dict(fused.state_dict());
    nn::set_fusion(plain, false);
    fused.to(dt);
    plain.to(dt);
    CHECK(keys(fused) == keys(plain));  // the study's checkpoints load either way
    CHECK(fused.get_buffer("block1.1.running_mean").sizes() == Shape{4});
    CHECK(fused.get_parameter("block4.0.weight").sizes() == Shape{8, 8, 3, 3});

    Tensor target = from_vector<int64_t>({1, 3, 0, 9, 4}, {5});
    for (int step = 0; step < 2; ++step) {  // two training steps: the running stats move twice
      INFO("step ", step);
      Tensor x = randn({5, 1, 28, 28}, dt);
      fused.zero_grad();
      plain.zero_grad();
      Tensor lf = fused(x), lp = plain(x);
      // the fused model really ran fused: one BatchNormRelu node per block, no ReLU node
      auto nf = node_names(lf), np = node_names(lp);
      CHECK(nf.count("BatchNormReluBackward") == 4);
      CHECK(nf.count("ReluBackward") == 0);
      CHECK(np.count("BatchNormReluBackward") == 0);
      CHECK(np.count("ReluBackward") == 4);
      CHECK_CLOSE(lf, lp, tol.rtol, tol.atol);
      cross_entropy(lf, target).backward();
      cross_entropy(lp, target).backward();
      auto pf = fused.named_parameters(), pp = plain.named_parameters();
      REQUIRE(pf.size() == pp.size());
      for (size_t i = 0; i < pf.size(); ++i) {
        INFO("gradient of ", pf[i].first);
        REQUIRE(pf[i].second.grad().defined());
        CHECK_CLOSE(pf[i].second.grad(), pp[i].second.grad(), tol.rtol, tol.atol);
      }
      auto bf = fused.named_buffers(), bp = plain.named_buffers();
      REQUIRE(bf.size() == bp.size());
      for (size_t i = 0; i < bf.size(); ++i) {
        INFO("buffer ", bf[i].first);
        CHECK_CLOSE(bf[i].second.to(DType::Float64), bp[i].second.to(DType::Float64), tol.rtol, tol.atol);
      }
    }
    fused.eval();
    plain.eval();
    NoGradGuard ng;
    Tensor x = randn({3, 1, 28, 28}, dt);
    CHECK_CLOSE(fused(x), plain(x), tol.rtol, tol.atol);  // eval: the running statistics
  }
}

namespace {
// A module between batch norm and ReLU: the pair is no longer adjacent.
class AddOne : public nn::Module {
 public:
  AddOne() : Module("AddOne") {}
  Tensor forward(const Tensor& x) override { return x + 1.0; }
};
// A ReLU subclass that computes something else: only the exact types are fused.
class DoubledReLU : public nn::ReLU {
 public:
  Tensor forward(const Tensor& x) override { return x.relu() * 2.0; }
};

std::shared_ptr<nn::Conv2d> conv() {
  return std::make_shared<nn::Conv2d>(nn::Conv2dConfig{.in_channels = 2, .out_channels = 3, .kernel_size = 3, .padding = 1});
}
}  // namespace

TEST_CASE("an edited Sequential computes its own math: fusion never outlives the pair it fused") {
  manual_seed(3);
  Tensor x = randn({2, 2, 5, 5}, DType::Float64);
  auto c = conv();
  auto bn = std::make_shared<nn::BatchNorm2d>(3);
  c->to(DType::Float64);
  bn->to(DType::Float64);
  bn->eval();  // running statistics: the same normalisation whatever order the cases run in
  {
    NoGradGuard ng;
    bn->running_mean.copy_(from_vector<double>({0.1, -0.2, 0.3}, {3}));
    bn->running_var.copy_(from_vector<double>({0.5, 2.0, 1.5}, {3}));
  }
  // the modules run one by one, by hand: conv, batch norm, then what follows
  auto by_hand = [&](const std::function<Tensor(const Tensor&)>& after) {
    NoGradGuard ng;
    return after(bn->forward(c->forward(x)));
  };
  Tensor h = by_hand([](const Tensor& t) { return t; });
  REQUIRE((h.lt(0.0).sum().item<int64_t>() > 0));  // some negatives: a ReLU that ran would show

  SUBCASE("a module inserted between batch norm and ReLU") {
    nn::Sequential s{c, bn, std::make_shared<AddOne>(), std::make_shared<nn::ReLU>()};
    Tensor y = s(x);
    CHECK_CLOSE(y, by_hand([](const Tensor& t) { return (t + 1.0).relu(); }), 1e-12, 1e-12);
    auto names = node_names(y);
    CHECK(names.count("BatchNormReluBackward") == 0);
    CHECK(names.count("BatchNormBackward") == 1);
    CHECK(names.count("ReluBackward") == 1);
  }
  SUBCASE("the ReLU replaced after construction (replace_module)") {
    nn::Sequential s{c, bn, std::make_shared<nn::ReLU>()};
    CHECK_CLOSE(s(x), by_hand([](const Tensor& t) { return t.relu(); }), 1e-12, 1e-12);  // fused
    s.replace_module("2", std::make_shared<nn::Identity>());
    CHECK(s[2]->name() == "Identity");
    CHECK_CLOSE(s(x), h, 1e-12, 1e-12);  // the negatives are back: no stale fused pair
  }
  SUBCASE("a ReLU subclass is run as itself") {
    nn::Sequential s{c, bn, std::make_shared<DoubledReLU>()};
    CHECK_CLOSE(s(x), by_hand([](const Tensor& t) { return t.relu() * 2.0; }), 1e-12, 1e-12);
  }
  SUBCASE("fusion off gives the same results, and a Sequential ending at batch norm has nothing to fuse") {
    nn::Sequential s{c, bn, std::make_shared<nn::ReLU>()};
    Tensor fused = s(x);
    s.fusion = false;
    CHECK(max_difference(s(x), fused).abs_diff <= 1e-12);
    nn::Sequential tail{c, bn};
    CHECK_CLOSE(tail(x), h, 1e-12, 1e-12);
  }
}

TEST_CASE("set_fusion reaches every Sequential below a module") {
  models::ScratchCnn m({.channels = {4, 4, 4, 4}});
  for (auto* b : {m.block1.get(), m.block2.get(), m.block3.get(), m.block4.get()}) CHECK(b->fusion);
  nn::set_fusion(m, false);
  for (auto* b : {m.block1.get(), m.block2.get(), m.block3.get(), m.block4.get()}) CHECK_FALSE(b->fusion);
  nn::set_fusion(*m.block2, true);
  CHECK(m.block2->fusion);
  CHECK_FALSE(m.block3->fusion);
}

namespace {
// Counts the calls of the CPU's fused convolution + epilogue kernel while it lives (the inference path of
// BatchNorm2d::forward_conv), passing them on.
struct AffineCalls {
  using Fn = decltype(KernelTable::conv2d_forward_affine);
  static inline Fn original = nullptr;
  static inline int calls = 0;
  AffineCalls() {
    original = kernels(DeviceType::CPU).conv2d_forward_affine;
    calls = 0;
    kernels(DeviceType::CPU).conv2d_forward_affine = [](const Tensor& out, const Tensor& x, const Tensor& w,
                                                        const Tensor& scale, const Tensor& shift, const Tensor& res,
                                                        bool relu, const Conv2dParams& p) {
      ++calls;
      original(out, x, w, scale, shift, res, relu, p);
    };
  }
  ~AffineCalls() { kernels(DeviceType::CPU).conv2d_forward_affine = original; }
};

// Batch norms with running statistics, scales and offsets away from the identity, so a fold that dropped any of
// them would show.
void randomise(nn::BatchNorm2d& bn) {
  NoGradGuard ng;
  const int64_t C = bn.num_features;
  bn.running_mean.copy_(randn({C}, bn.running_mean.dtype()) * 0.5);
  bn.running_var.copy_(rand({C}, bn.running_var.dtype()) + 0.5);
  bn.weight.copy_(rand({C}, bn.weight.dtype()) + 0.5);
  bn.bias.copy_(randn({C}, bn.bias.dtype()) * 0.3);
}
// m itself when it is one, and every batch norm below it
void randomise_batch_norms(nn::Module& m) {
  if (auto* self = dynamic_cast<nn::BatchNorm2d*>(&m)) randomise(*self);
  for (const auto& [name, sub] : m.named_modules())
    if (auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>(sub); bn && bn.get() != &m) randomise(*bn);
}
}  // namespace

TEST_CASE("inference folds batch norm, the shortcut and ReLU into the convolution: ResNet's block and Sequential") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype ", dtype_name(dt));
    const Tol tol = tolerance(dt);
    manual_seed(11);
    models::BasicBlock block(4, 8, 2);  // with the 1x1 downsample (a Sequential of conv and batch norm)
    block.to(dt);
    randomise_batch_norms(block);
    block.eval();
    Tensor x = randn({3, 4, 9, 9}, dt);
    AffineCalls counter;
    // the graph-recording path: separate convolution and batch norm + ReLU nodes
    Tensor xr = x.detach().requires_grad_(true);
    Tensor unfused = block(xr);
    CHECK(AffineCalls::calls == 0);
    auto names = node_names(unfused);
    CHECK(names.count("Conv2dBackward") == 3);
    CHECK(names.count("BatchNormReluBackward") == 2);
    CHECK(names.count("BatchNormBackward") == 1);
    Tensor folded;
    {
      NoGradGuard ng;
      folded = block(x);
    }
    CHECK(AffineCalls::calls == 3);  // conv1 + bn1 + ReLU, the downsample, conv2 + bn2 + shortcut + ReLU
    CHECK_FALSE(folded.requires_grad());
    CHECK_CLOSE(folded, unfused.detach(), tol.rtol, tol.atol);
    // frozen parameters and an input without gradient: nothing records a graph, so it folds with grad mode on
    block.requires_grad_(false);
    CHECK_CLOSE(block(x), folded, 0.0, 0.0);
    CHECK(AffineCalls::calls == 6);
    // training normalises with the batch's statistics: never folded
    block.train();
    {
      NoGradGuard ng;
      block(x);
    }
    CHECK(AffineCalls::calls == 6);
  }
  // under bfloat16 autocast the folded convolution rounds the same operands (products in bf16, sums and the
  // folded batch norm in float32): it agrees with the graph-recording path to float32 rounding of the fold
  {
    manual_seed(13);
    models::BasicBlock block(8, 8, 1);
    randomise_batch_norms(block);
    block.eval();
    Tensor x = randn({2, 8, 12, 12});
    AffineCalls counter;
    auto scope = autocast(kCPU, DType::BFloat16);
    Tensor unfused = block(x.detach().requires_grad_(true)).detach();
    Tensor folded;
    {
      NoGradGuard ng;
      folded = block(x);
    }
    CHECK(AffineCalls::calls == 2);
    CHECK_CLOSE(folded, unfused, 1e-4, 1e-4);
  }
  // a Conv2d subclass may compute something else: never folded; a residual without ReLU is added either way
  {
    struct ScaledConv : nn::Conv2d {
      using nn::Conv2d::Conv2d;
      Tensor forward(const Tensor& x) override { return nn::Conv2d::forward(x) * 2.0; }
    };
    manual_seed(14);
    auto c = std::make_shared<ScaledConv>(nn::Conv2dConfig{.in_channels = 2, .out_channels = 3, .kernel_size = 3, .padding = 1});
    auto bn = std::make_shared<nn::BatchNorm2d>(3);
    randomise_batch_norms(*bn);
    bn->eval();
    NoGradGuard ng;
    Tensor x = randn({2, 2, 6, 6});
    AffineCalls counter;
    nn::Sequential s{c, bn, std::make_shared<nn::ReLU>()};
    CHECK_CLOSE(s(x), bn->forward_relu((*c)(x)), 0.0, 0.0);
    CHECK(AffineCalls::calls == 0);
    auto plain_conv = std::make_shared<nn::Conv2d>(c->cfg);
    plain_conv->load_state_dict(c->state_dict());
    Tensor r = randn({2, 3, 6, 6});
    Tensor folded = bn->forward_conv(*plain_conv, x, false, r);
    CHECK(AffineCalls::calls == 1);
    CHECK_CLOSE(folded, bn->forward((*plain_conv)(x)) + r, 1e-5, 1e-5);
    bn->train();  // batch statistics (the output does not depend on the running ones): not folded, r still added
    Tensor with_r = bn->forward_conv(*plain_conv, x, false, r), without = bn->forward_conv(*plain_conv, x, false);
    CHECK(AffineCalls::calls == 1);
    CHECK_CLOSE(with_r - without, r, 1e-6, 1e-6);
  }
  // a Sequential of Conv2d, BatchNorm2d, ReLU (the scratch CNN's blocks), against fusion off
  manual_seed(12);
  models::ScratchCnn m({.channels = {4, 6, 8, 8}, .dropout = 0.0});
  randomise_batch_norms(m);
  m.eval();
  NoGradGuard ng;
  Tensor x = randn({5, 1, 28, 28});
  AffineCalls counter;
  Tensor folded = m(x);
  CHECK(AffineCalls::calls == 4);
  nn::set_fusion(m, false);
  Tensor plain = m(x);
  CHECK(AffineCalls::calls == 4);
  CHECK_CLOSE(folded, plain, 1e-5, 1e-5);
}
