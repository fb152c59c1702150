// nn::Module and the layers: PyTorch's names and order, counts, modes, state_dict round trips and
// strict-load errors, freezing, dtype conversion, repr, initialisation and BatchNorm bookkeeping.
#include <cmath>
#include <memory>

#include "nn/nn.h"
#include "tensor/ops.h"
#include "test_util.h"

using namespace dl;
using namespace dl::nn;

namespace {

using dl::test::check_throws_with;

std::vector<std::string> keys(const NamedTensors& v) {
  std::vector<std::string> out;
  for (const auto& [k, t] : v) out.push_back(k);
  return out;
}

// A torchvision-style residual-ish block (no skip needed for naming).
struct Block : Module {
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1;
  Block(int64_t c) : Module("Block") {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(Conv2dConfig{.in_channels = c, .out_channels = c, .kernel_size = 3, .padding = 1, .bias = false}));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(c));
    conv2 = register_module("conv2", std::make_shared<Conv2d>(Conv2dConfig{.in_channels = c, .out_channels = c, .kernel_size = 1}));
  }
  Tensor forward(const Tensor& x) override { return conv2->forward(bn1->forward(conv1->forward(x)).relu()); }
};

struct Net : Module {
  std::shared_ptr<Conv2d> stem;
  std::shared_ptr<Sequential> layer1;
  std::shared_ptr<Linear> fc;
  Tensor scale;
  Net() : Module("Net") {
    scale = register_parameter("scale", ones({1}));
    stem = register_module("stem", std::make_shared<Conv2d>(Conv2dConfig{.in_channels = 1, .out_channels = 4, .kernel_size = 3, .padding = 1}));
    layer1 = register_module("layer1", std::make_shared<Sequential>(std::make_shared<Block>(4), std::make_shared<Block>(4)));
    register_buffer("step_seen", scalar_tensor(0, DType::Int64));
    register_buffer("scratch", zeros({2}), /*persistent=*/false);
    fc = register_module("fc", std::make_shared<Linear>(4, 3));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = layer1->forward(stem->forward(x * scale));
    return fc->forward(h.mean({2, 3}));
  }
};

}  // namespace

TEST_CASE("named_parameters, named_buffers and state_dict use PyTorch's names and order") {
  Net net;
  std::vector<std::string> block_params = {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias"};
  std::vector<std::string> expected = {"scale", "stem.weight", "stem.bias"};
  for (const char* b : {"layer1.0.", "layer1.1."})
    for (const auto& p : block_params) expected.push_back(b + p);
  expected.push_back("fc.weight");
  expected.push_back("fc.bias");
  CHECK(keys(net.named_parameters()) == expected);
  CHECK(net.parameters().size() == expected.size());
  CHECK(keys(net.named_parameters(/*recurse=*/false)) == std::vector<std::string>{"scale"});

  CHECK(keys(net.named_buffers()) ==
        std::vector<std::string>{"step_seen", "scratch", "layer1.0.bn1.running_mean", "layer1.0.bn1.running_var",
                                 "layer1.0.bn1.num_batches_tracked", "layer1.1.bn1.running_mean",
                                 "layer1.1.bn1.running_var", "layer1.1.bn1.num_batches_tracked"});
  CHECK(net.get_buffer("layer1.1.bn1.num_batches_tracked").dtype() == DType::Int64);
  CHECK(net.get_buffer("layer1.1.bn1.num_batches_tracked").dim() == 0);

  // state_dict: each module's parameters, then its persistent buffers, then its children
  std::vector<std::string> sd = {"scale", "step_seen", "stem.weight", "stem.bias"};
  for (const char* b : {"layer1.0.", "layer1.1."})
    for (const char* k : {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                          "bn1.num_batches_tracked", "conv2.weight", "conv2.bias"})
      sd.push_back(std::string(b) + k);
  sd.push_back("fc.weight");
  sd.push_back("fc.bias");
  CHECK(keys(net.state_dict()) == sd);

  std::vector<std::string> children;
  for (auto& [k, m] : net.named_children()) children.push_back(k);
  CHECK(children == std::vector<std::string>{"stem", "layer1", "fc"});
  std::vector<std::string> mods;
  for (auto& [k, m] : net.named_modules()) mods.push_back(k + ":" + m->name());
  CHECK(mods == std::vector<std::string>{"stem:Conv2d", "layer1:Sequential", "layer1.0:Block", "layer1.0.conv1:Conv2d",
                                         "layer1.0.bn1:BatchNorm2d", "layer1.0.conv2:Conv2d", "layer1.1:Block",
                                         "layer1.1.conv1:Conv2d", "layer1.1.bn1:BatchNorm2d", "layer1.1.conv2:Conv2d",
                                         "fc:Linear"});
  // look-ups return the live slots
  CHECK(net.get_parameter("layer1.1.conv2.bias").is_same(net.layer1->at<Block>(1)->conv2->bias));
  CHECK(net.get_submodule("layer1.0.bn1") == net.layer1->at<Block>(0)->bn1);
  check_throws_with([&] { net.get_parameter("layer1.2.conv1.weight"); }, {"no submodule '2'", "inside 'layer1'"});
  check_throws_with([&] { net.get_parameter("fc.gamma"); }, {"no parameter 'fc.gamma'"});
}

TEST_CASE("shared parameters and modules are listed once, as in PyTorch") {
  auto lin = std::make_shared<Linear>(3, 3);
  Sequential seq{lin, std::make_shared<ReLU>(), lin};
  CHECK(keys(seq.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias"});
  CHECK(seq.num_parameters() == 12);
  CHECK(seq.named_modules().size() == 2);  // "0" and "1"; "2" is the same module as "0"
  CHECK(keys(seq.state_dict()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
}

TEST_CASE("registration errors name the module and the clash") {
  Net net;
  check_throws_with([&] { net.register_parameter("scale", zeros({1})); }, {"Net", "'scale'", "already taken"});
  check_throws_with([&] { net.register_buffer("a.b", zeros({1})); }, {"must not contain '.'"});
  check_throws_with([&] { net.register_module("fc", std::make_shared<ReLU>()); }, {"'fc'", "already taken"});
  check_throws_with([&] { net.register_parameter("x", zeros({2}, DType::Int64)); }, {"int64", "floating"});
  check_throws_with([&] { net.register_module<Module>("nothing", nullptr); }, {"'nothing' is null"});
}

TEST_CASE("num_parameters counts all and trainable parameters and freezing is recursive") {
  Net net;
  int64_t block = 4 * 4 * 9 + 4 + 4 + 4 * 4 + 4;  // conv1 (no bias), bn1, conv2
  int64_t total = 1 + (4 * 9 + 4) + 2 * block + (4 * 3 + 3);
  CHECK(net.num_parameters() == total);
  CHECK(net.num_parameters(/*trainable_only=*/true) == total);
  net.layer1->requires_grad_(false);
  CHECK(net.num_parameters() == total);
  CHECK(net.num_parameters(true) == total - 2 * block);
  net.requires_grad_(true);
  CHECK(net.num_parameters(true) == total);
}

TEST_CASE("freezing stops gradients at the frozen parameters only") {
  manual_seed(3);
  Net net;
  net.stem->requires_grad_(false);
  net.layer1->at<Block>(0)->bn1->requires_grad_(false);
  Tensor x = randn({2, 1, 5, 5});
  net.forward(x).sum().backward();
  for (auto& [name, p] : net.named_parameters()) {
    bool frozen = name.rfind("stem.", 0) == 0 || name.rfind("layer1.0.bn1.", 0) == 0;
    INFO(name);
    CHECK(p.grad().defined() == !frozen);
  }
  CHECK(net.scale.grad().defined());  // upstream of the frozen stem, still reached
  net.zero_grad();
  for (auto& p : net.parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("train() and eval() reach every module") {
  Net net;
  CHECK(net.is_training());
  net.eval();
  CHECK_FALSE(net.is_training());
  for (auto& [k, m] : net.named_modules()) {
    INFO(k);
    CHECK_FALSE(m->is_training());
  }
  net.layer1->train();
  CHECK(net.layer1->at<Block>(1)->bn1->is_training());
  CHECK_FALSE(net.stem->is_training());
  net.train();
  for (auto& [k, m] : net.named_modules()) CHECK(m->is_training());
}

TEST_CASE("state_dict round trip gives an identical model") {
  manual_seed(1);
  Net a;
  manual_seed(2);
  Net b;
  Tensor x = randn({2, 1, 6, 6});
  a.train();
  a.forward(x);  // moves a's running statistics and num_batches_tracked
  a.eval();
  b.eval();
  CHECK_FALSE(allclose(a.forward(x), b.forward(x)));
  LoadResult r = b.load_state_dict(a.state_dict());
  CHECK(r.ok());
  auto sa = a.state_dict(), sb = b.state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    CHECK(sa[i].first == sb[i].first);
    CHECK(sa[i].second.dtype() == sb[i].second.dtype());
    CHECK(max_difference(sa[i].second, sb[i].second).abs_diff == 0.0);
  }
  CHECK(b.get_buffer("layer1.0.bn1.num_batches_tracked").item<int64_t>() == 1);
  CHECK(max_difference(a.forward(x), b.forward(x)).abs_diff == 0.0);
  // loading copies values: b's parameter slots are still b's own tensors
  CHECK_FALSE(b.fc->weight.storage() == a.fc->weight.storage());
  // the state_dict aliases the live tensors (no copy), as in PyTorch
  CHECK(a.state_dict()[0].second.storage() == a.scale.storage());
}

TEST_CASE("load_state_dict converts dtypes and strict loading lists every problem at once") {
  Net net;
  StateDict sd = net.state_dict();
  // float64 values load into float32 parameters
  StateDict f64;
  for (auto& [k, t] : sd) f64.emplace_back(k, is_floating(t.dtype()) ? ops::to_dtype(t, DType::Float64) : t);
  CHECK(net.load_state_dict(f64).ok());
  CHECK(net.fc->weight.dtype() == DType::Float32);

  StateDict bad;
  for (auto& [k, t] : sd) {
    if (k == "layer1.1.bn1.running_var" || k == "fc.bias") continue;  // missing
    if (k == "stem.weight") {
      bad.emplace_back(k, zeros({4, 2, 3, 3}));  // wrong shape
      continue;
    }
    if (k == "fc.weight") {
      bad.emplace_back(k, full({3, 4}, 7.0));  // fine, but must not load when strict fails
      continue;
    }
    bad.emplace_back(k, t);
  }
  bad.emplace_back("fc.gamma", zeros({3}));       // unexpected
  bad.emplace_back("head.weight", zeros({3, 4}));  // unexpected
  Tensor before = net.fc->weight.clone();
  check_throws_with([&] { net.load_state_dict(bad); },
                    {"Net.load_state_dict (strict)", "missing keys", "layer1.1.bn1.running_var", "fc.bias",
                     "unexpected keys", "fc.gamma", "head.weight", "size mismatch for stem.weight",
                     "the module has shape [4, 1, 3, 3], the state_dict has [4, 2, 3, 3]", "nothing was loaded"});
  CHECK(max_difference(net.fc->weight, before).abs_diff == 0.0);  // strict failure loads nothing

  // non-strict: loads what matches, reports the rest
  LoadResult r = net.load_state_dict(bad, /*strict=*/false);
  CHECK(r.missing_keys == std::vector<std::string>{"layer1.1.bn1.running_var", "fc.bias"});
  CHECK(r.unexpected_keys == std::vector<std::string>{"fc.gamma", "head.weight"});
  REQUIRE(r.mismatched.size() == 1);
  CHECK(r.mismatched[0].name == "stem.weight");
  CHECK(r.mismatched[0].expected == Shape{4, 1, 3, 3});
  CHECK(r.mismatched[0].got == Shape{4, 2, 3, 3});
  CHECK_FALSE(r.ok());
  CHECK(net.fc->weight.to_vector<float>() == std::vector<float>(12, 7.0f));
  check_throws_with([&] { net.load_state_dict({{"fc.bias", zeros({3})}, {"fc.bias", zeros({3})}}, false); },
                    {"'fc.bias' appears twice"});
}

TEST_CASE("to(Float64) converts parameters, gradients and float buffers in place") {
  manual_seed(4);
  Net net;
  Tensor x = randn({2, 1, 5, 5});
  Tensor y32 = net.forward(x);
  y32.sum().backward();
  Tensor w = net.fc->weight;  // a handle on the slot
  auto before_ids = net.parameters();
  net.to(DType::Float64);
  CHECK(w.dtype() == DType::Float64);  // same slot, converted
  auto after = net.parameters();
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].is_same(before_ids[i]));
    CHECK(after[i].dtype() == DType::Float64);
    CHECK(after[i].requires_grad());
    CHECK(after[i].grad().dtype() == DType::Float64);
  }
  CHECK(net.get_buffer("layer1.0.bn1.running_mean").dtype() == DType::Float64);
  CHECK(net.get_buffer("layer1.0.bn1.num_batches_tracked").dtype() == DType::Int64);
  CHECK(net.get_buffer("step_seen").dtype() == DType::Int64);
  Tensor y64 = net.forward(x.to(DType::Float64));
  CHECK(y64.dtype() == DType::Float64);
  CHECK_CLOSE(y64, y32, 1e-5, 1e-6);  // same values, computed in float64
  y64.sum().backward();  // gradients accumulate into the converted grads
  CHECK(net.fc->weight.grad().dtype() == DType::Float64);
  check_throws_with([&] { net.to(DType::Int64); }, {"floating dtype"});
}

TEST_CASE("repr prints the module tree like PyTorch") {
  struct Model : Module {
    Model() {
      register_module("features",
                      std::make_shared<Sequential>(
                          std::make_shared<Conv2d>(Conv2dConfig{.in_channels = 3, .out_channels = 8, .kernel_size = 3, .padding = 1, .bias = false}),
                          std::make_shared<BatchNorm2d>(8), std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2),
                          std::make_shared<Conv2d>(Conv2dConfig{.in_channels = 8, .out_channels = 16, .kernel_size = {3, 5}, .stride = 2, .dilation = {2, 1}, .groups = 4}),
                          std::make_shared<AvgPool2d>(2, 1, 1)));
      register_module("pool", std::make_shared<AdaptiveAvgPool2d>(1));
      register_module("drop", std::make_shared<Dropout>(0.25));
      register_module("flatten", std::make_shared<Flatten>());
      register_module("fc", std::make_shared<Linear>(16, 10));
      register_module("id", std::make_shared<Identity>());
      register_module("bn", std::make_shared<BatchNorm2d>(4, 1e-3, std::nullopt, false));
    }
  } m;
  // print(model) in PyTorch 1.13 for the same model (class name from C++: "Model")
  const char* expected = R"(Model(
  (features): Sequential(
    (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (2): ReLU()
    (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    (4): Conv2d(8, 16, kernel_size=(3, 5), stride=(2, 2), dilation=(2, 1), groups=4)
    (5): AvgPool2d(kernel_size=2, stride=1, padding=1)
  )
  (pool): AdaptiveAvgPool2d(output_size=1)
  (drop): Dropout(p=0.25, inplace=False)
  (flatten): Flatten(start_dim=1, end_dim=-1)
  (fc): Linear(in_features=16, out_features=10, bias=True)
  (id): Identity()
  (bn): BatchNorm2d(4, eps=0.001, momentum=None, affine=False, track_running_stats=True)
))";
  CHECK(m.repr() == expected);
  CHECK(CrossEntropyLoss().repr() == "CrossEntropyLoss()");
  CHECK(keys(m.state_dict()) ==
        std::vector<std::string>{"features.0.weight", "features.1.weight", "features.1.bias", "features.1.running_mean",
                                 "features.1.running_var", "features.1.num_batches_tracked", "features.4.weight",
                                 "features.4.bias", "fc.weight", "fc.bias", "bn.running_mean", "bn.running_var",
                                 "bn.num_batches_tracked"});
}

TEST_CASE("Sequential indexing, forward and errors") {
  auto seq = std::make_shared<Sequential>();
  seq->push_back(std::make_shared<Linear>(4, 5));
  seq->push_back(std::make_shared<ReLU>());
  auto last = seq->push_back(std::make_shared<Linear>(5, 2, /*bias=*/false));
  CHECK(seq->size() == 3);
  CHECK((*seq)[-1] == std::static_pointer_cast<Module>(last));
  CHECK(seq->at<Linear>(0)->out_features == 5);
  check_throws_with([&] { (*seq)[3]; }, {"index 3 is out of range for 3 modules"});
  check_throws_with([&] { seq->at<Conv2d>(1); }, {"Sequential[1] is a ReLU"});
  Tensor x = randn({3, 4});
  Tensor expected = last->forward(seq->at<Linear>(0)->forward(x).relu());
  CHECK(max_difference(seq->forward(x), expected).abs_diff == 0.0);
  CHECK(keys(seq->named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight"});
  Sequential empty_seq;
  CHECK(empty_seq.forward(x).is_same(x));
}

TEST_CASE("layers check their input shapes and settings") {
  Linear lin(4, 3);
  check_throws_with([&] { lin.forward(zeros({2, 5})); }, {"Linear(in_features=4", "last dim is 4", "[2, 5]"});
  CHECK(lin.forward(zeros({2, 7, 4})).sizes() == Shape{2, 7, 3});  // any leading dims
  CHECK(lin.forward(zeros({4})).sizes() == Shape{3});
  Conv2d conv({.in_channels = 3, .out_channels = 6, .kernel_size = 3, .groups = 3});
  CHECK(conv.weight.sizes() == Shape{6, 1, 3, 3});
  check_throws_with([&] { conv.forward(zeros({1, 4, 8, 8})); }, {"Conv2d(3, 6", "(N, 3, H, W)", "[1, 4, 8, 8]"});
  check_throws_with([&] { Conv2d({.in_channels = 3, .out_channels = 4, .groups = 2}); }, {"in_channels (3)", "groups (2)"});
  check_throws_with([&] { Conv2d({.in_channels = 2, .out_channels = 4, .kernel_size = 3, .stride = 0}); }, {"stride must be positive"});
  BatchNorm2d bn(4);
  check_throws_with([&] { bn.forward(zeros({2, 4})); }, {"BatchNorm2d(4", "4-D input"});
  check_throws_with([&] { bn.forward(zeros({2, 3, 2, 2})); }, {"expected 4 channels"});
  check_throws_with([&] { Dropout(1.5); }, {"between 0 and 1, got 1.5"});
  check_throws_with([&] { MaxPool2d(2, std::nullopt, 2); }, {"at most half the kernel size"});
  Module plain("Plain");
  check_throws_with([&] { plain.forward(zeros({1})); }, {"Plain has no forward"});
}

TEST_CASE("BatchNorm2d counts batches, moves running statistics by momentum, and uses them in eval") {
  manual_seed(5);
  BatchNorm2d bn(3, 1e-5, 0.2);
  Tensor x = randn({4, 3, 2, 2}) * 2.0 + 1.0;
  Tensor mean = x.mean({0, 2, 3});
  Tensor var_unbiased = x.var({0, 2, 3}, /*unbiased=*/true);
  bn.forward(x);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  CHECK_CLOSE(bn.running_mean, mean * 0.2, 1e-5, 1e-6);  // (1 - m) * 0 + m * mean
  CHECK_CLOSE(bn.running_var, var_unbiased * 0.2 + 0.8, 1e-5, 1e-6);
  bn.forward(x);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 2);
  CHECK_CLOSE(bn.running_mean, mean * 0.2 * 0.8 + mean * 0.2, 1e-5, 1e-6);
  bn.eval();
  Tensor rm = bn.running_mean.clone(), rv = bn.running_var.clone();
  Tensor y = bn.forward(x);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 2);  // eval does not count
  CHECK(max_difference(bn.running_mean, rm).abs_diff == 0.0);
  Tensor expected = (x - rm.view({1, 3, 1, 1})) / (rv.view({1, 3, 1, 1}) + 1e-5).sqrt();
  CHECK_CLOSE(y, expected, 1e-5, 1e-5);

  // momentum = None: cumulative average 1/num_batches_tracked
  BatchNorm2d cma(3, 1e-5, std::nullopt);
  Tensor x2 = randn({4, 3, 2, 2});
  cma.forward(x);
  cma.forward(x2);
  CHECK_CLOSE(cma.running_mean, (mean + x2.mean({0, 2, 3})) * 0.5, 1e-5, 1e-6);

  // no running statistics: eval normalises with the batch's own
  BatchNorm2d plain(3, 1e-5, 0.1, /*affine=*/false, /*track_running_stats=*/false);
  CHECK(plain.named_buffers().empty());
  CHECK(plain.named_parameters().empty());
  plain.eval();
  Tensor z = plain.forward(x);
  CHECK_CLOSE(z.mean({0, 2, 3}), zeros({3}), 0.0, 1e-5);
}

TEST_CASE("Dropout draws from the default generator, so a seed fixes the mask") {
  Dropout drop(0.5);
  Tensor x = ones({1000});
  manual_seed(11);
  Tensor a = drop.forward(x);
  manual_seed(11);
  Tensor b = drop.forward(x);
  CHECK(max_difference(a, b).abs_diff == 0.0);
  double kept = a.gt(0.0).to(DType::Float64).sum().item<double>();
  CHECK(kept > 400);
  CHECK(kept < 600);
  CHECK(a.max().item<float>() == doctest::Approx(2.0));  // survivors scaled by 1/(1-p)
  drop.eval();
  CHECK(max_difference(drop.forward(x), x).abs_diff == 0.0);
}

TEST_CASE("CrossEntropyLoss module equals the functional form") {
  manual_seed(6);
  Tensor logits = randn({5, 4});
  Tensor target = from_vector<int64_t>({0, 3, 1, 1, 2}, {5});
  CrossEntropyLoss loss;
  CHECK(max_difference(loss(logits, target), cross_entropy(logits, target)).abs_diff == 0.0);
  CrossEntropyLoss weighted({.weight = from_vector<float>({1, 2, 3, 4}, {4})});
  CHECK(keys(weighted.named_buffers()) == std::vector<std::string>{"weight"});
}

TEST_CASE("init: gains, fans and the default Linear/Conv2d initialisation") {
  using namespace dl::nn::init;
  CHECK(calculate_gain("relu") == doctest::Approx(std::sqrt(2.0)));
  CHECK(calculate_gain("tanh") == doctest::Approx(5.0 / 3));
  CHECK(calculate_gain("leaky_relu") == doctest::Approx(std::sqrt(2.0 / (1 + 0.0001))));
  CHECK(calculate_gain("leaky_relu", std::sqrt(5.0)) == doctest::Approx(std::sqrt(1.0 / 3)));
  CHECK(calculate_gain("conv2d") == 1.0);
  check_throws_with([] { calculate_gain("gelu"); }, {"unsupported nonlinearity 'gelu'"});
  CHECK(calculate_fan_in_and_fan_out(zeros({8, 3, 5, 5})) == std::pair<int64_t, int64_t>{75, 200});
  check_throws_with([] { calculate_fan_in_and_fan_out(zeros({4})); }, {"fewer than 2 dimensions", "[4]"});
  check_throws_with([] { uniform_(zeros({4}), 1.0, 0.0); }, {"a <= b", "a=1 b=0"});
  check_throws_with([] { normal_(zeros({4}, DType::Int64)); }, {"float32 or float64", "int64"});

  // PyTorch's reset_parameters: weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming a=sqrt(5)), bias too
  manual_seed(7);
  Conv2d conv({.in_channels = 16, .out_channels = 64, .kernel_size = 3});
  double bound = 1.0 / std::sqrt(16.0 * 9);
  auto w = conv.weight.to_vector<double>();
  double mx = 0, sq = 0;
  for (double v : w) {
    mx = std::max(mx, std::abs(v));
    sq += v * v;
  }
  CHECK(mx <= bound);
  CHECK(mx > 0.99 * bound);                                                     // the range is used
  CHECK(std::sqrt(sq / w.size()) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.03));  // U(-b,b) std
  for (double v : conv.bias.to_vector<double>()) CHECK(std::abs(v) <= bound);

  // the same seed gives the same model
  manual_seed(9);
  Linear l1(10, 7);
  manual_seed(9);
  Linear l2(10, 7);
  CHECK(max_difference(l1.weight, l2.weight).abs_diff == 0.0);
  CHECK(max_difference(l1.bias, l2.bias).abs_diff == 0.0);

  // kaiming_normal_ (fan_out, relu) and xavier_normal_: standard deviations
  Generator gen(123);
  Tensor k = kaiming_normal_(empty({256, 128, 3, 3}), 0.0, FanMode::FanOut, "relu", &gen);
  CHECK(k.var({0, 1, 2, 3}).item<double>() == doctest::Approx(2.0 / (256 * 9)).epsilon(0.02));
  CHECK(std::abs(k.mean().item<double>()) < 1e-3);
  Tensor xv = xavier_normal_(empty({300, 500}, DType::Float64), 2.0, &gen);
  CHECK(xv.var({0, 1}).item<double>() == doctest::Approx(4.0 * 2.0 / 800).epsilon(0.02));
  Tensor xu = xavier_uniform_(empty({300, 500}), 1.0, &gen);
  CHECK(xu.abs().max().item<double>() <= std::sqrt(6.0 / 800) + 1e-7);
  CHECK(constant_(empty({3}), 2.5).to_vector<float>() == std::vector<float>{2.5f, 2.5f, 2.5f});
}
