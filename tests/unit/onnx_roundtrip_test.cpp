// Export, then import: the same outputs, the same parameter names, and an imported model that
// fine-tunes step for step like the native one. Also ONNX files as weights (onnx/weights.h).
#include <algorithm>
#include <filesystem>

#include "autograd/node.h"
#include "file_test_util.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "models/weights.h"
#include "autograd/functional.h"
#include "nn/optim/sgd.h"
#include "onnx/onnx.h"
#include "onnx/weights.h"
#include "tensor/ops.h"
#include "onnx_test_util.h"
#include "test_util.h"

using namespace dl;
using dl::test::TmpDir;

namespace {
Tensor run(nn::Module& m, const Tensor& x) {
  NoGradGuard ng;
  return m(x);
}
}  // namespace

TEST_CASE("ONNX round trip: the scratch CNN and ResNet18 come back with the same outputs and names") {
  TmpDir tmp;
  manual_seed(21);
  models::ScratchCnn scratch({.channels = {8, 16, 16, 32}});
  dl::test::randomize_batch_norms(scratch, 22);
  models::ResNet18 resnet(10);
  dl::test::randomize_batch_norms(resnet, 23);
  struct Case {
    nn::Module* net;
    Shape sample;
  };
  for (auto [net, sample] : {Case{&scratch, {1, 28, 28}}, Case{&resnet, {3, 32, 32}}}) {
    net->eval();
    Shape s = sample;
    s.insert(s.begin(), 2);
    dl::onnx::export_model(*net, randn(s), tmp.path("m.onnx"));
    auto back = dl::onnx::load(tmp.path("m.onnx"));
    for (int64_t b : {2, 5}) {  // the batch is dynamic
      Shape sb = sample;
      sb.insert(sb.begin(), b);
      Tensor x = randn(sb);
      // float32 rounding, amplified through ResNet18's 20 layers with random batch norms (outputs up to ~100;
      // the convolution's algorithm alone moves a logit by 1e-5 of that scale): compared at that scale
      const Tensor expect = run(*net, x);
      const double scale = std::max(1.0, ops::to_dtype(expect.abs().max(), DType::Float64).item<double>());
      CHECK_CLOSE(run(*back, x), expect, 1e-5, 1e-5 * scale);
    }
    // the imported model's state_dict has the native keys (less num_batches_tracked) and values
    auto native = net->state_dict();
    auto imported = back->state_dict();
    size_t matched = 0;
    for (const auto& [k, t] : native) {
      if (k.ends_with("num_batches_tracked")) continue;
      const Tensor* u = nullptr;
      for (const auto& [k2, t2] : imported)
        if (k2 == k) u = &t2;
      CHECK_MESSAGE(u != nullptr, k << " is not in the imported state_dict");
      if (u) {
        CHECK(allclose(*u, t, 0.0, 0.0));
        ++matched;
      }
    }
    CHECK(matched == imported.size());
  }
}

TEST_CASE("An imported model fine-tunes like the native one: the same SGD steps give the same parameters") {
  TmpDir tmp;
  manual_seed(31);
  models::ScratchCnn native({.channels = {4, 8, 8, 16}});
  dl::test::randomize_batch_norms(native, 32);
  native.eval();  // batch norm on running statistics (the importer's BatchNormalization), no dropout
  dl::onnx::export_model(native, randn({2, 1, 28, 28}), tmp.path("s.onnx"));
  auto imported = dl::onnx::load(tmp.path("s.onnx"));
  imported->eval();
  CHECK(imported->num_parameters(true) == native.num_parameters(true));
  optim::SGD opt_a(native.parameters(), {.lr = 0.05, .momentum = 0.9});
  optim::SGD opt_b(imported->parameters(), {.lr = 0.05, .momentum = 0.9});
  Generator g(33);
  for (int step = 0; step < 5; ++step) {
    Tensor x = randn({6, 1, 28, 28}, {}, &g);
    Tensor y = from_vector<int64_t>({0, 1, 2, 3, 4, 5}, {6});
    for (auto [m, opt] : {std::pair<nn::Module*, optim::SGD*>{&native, &opt_a}, {imported.get(), &opt_b}}) {
      opt->zero_grad();
      Tensor loss = cross_entropy((*m)(x), y);
      loss.backward();
      opt->step();
    }
  }
  auto a = native.state_dict();
  auto b = imported->state_dict();
  size_t compared = 0;
  for (const auto& [k, t] : a) {
    if (k.ends_with("num_batches_tracked")) continue;
    for (const auto& [k2, t2] : b)
      if (k2 == k) {
        CHECK_CLOSE(t2, t, 1e-5, 1e-6);
        ++compared;
      }
  }
  CHECK(compared == b.size());  // every imported tensor was compared with its native one
  CHECK(compared == 26);        // 4 x (conv weight, bias; bn weight, bias, mean, var) + fc weight, bias
  Tensor x = randn({3, 1, 28, 28});
  CHECK_CLOSE(run(*imported, x), run(native, x), 1e-5, 1e-5);
}

TEST_CASE("ONNX files are weights: load_weights reads an exported ResNet18 by its state_dict names") {
  TmpDir tmp;
  manual_seed(41);
  models::ResNet18 net(10);
  dl::test::randomize_batch_norms(net, 42);
  dl::onnx::export_model(net, randn({1, 3, 32, 32}), tmp.path("r.onnx"));
  dl::onnx::register_weights_format();
  TensorDict w = load_weights(tmp.path("r.onnx"));
  models::ResNet18 other(10);
  nn::StateDict sd(w.begin(), w.end());
  auto r = other.load_state_dict(sd, false);
  CHECK(r.unexpected_keys.empty());
  CHECK(r.mismatched.empty());
  for (const auto& k : r.missing_keys) CHECK_MESSAGE(k.ends_with("num_batches_tracked"), k);
  net.eval();
  other.eval();
  Tensor x = randn({2, 3, 32, 32});
  CHECK(allclose(run(other, x), run(net, x), 0.0, 0.0));
  // a graph that is not a ResNet18 is refused with what is wrong
  nn::Linear lin(4, 3);
  dl::onnx::export_model(lin, randn({1, 4}), tmp.path("l.onnx"));
  dl::test::check_throws_with([&] { load_weights(tmp.path("l.onnx")); }, {"l.onnx", "Conv"});
}
