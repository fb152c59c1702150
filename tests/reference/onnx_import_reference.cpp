// ONNX import against PyTorch: models exported by torch.onnx (tests/fixtures/make_onnx_import.py:
// torchvision's resnet18 at opsets 9 and 13, small models covering the other ops at 7..17) are
// loaded with dl::onnx::load and run at batch 3 and batch 1 (the batch axis is dynamic); their
// outputs must match PyTorch's within a relative difference of 1e-4 (max |ours - torch| divided by
// max |torch|, per output). For the small models the input gradient of sum(output * r) must match
// PyTorch's too (the graph is built of differentiable ops).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "models/weights.h"
#include "onnx/onnx.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

struct Manifest {
  std::vector<std::string> written;
  std::map<std::string, std::string> refused;
};

fs::path fixture_root() { return fs::path(dl::test::fixtures_dir()) / "onnx_import"; }

std::optional<Manifest> manifest() {
  const fs::path p = fixture_root() / "manifest.json";
  if (dl::test::fixtures_dir().empty() || !fs::exists(p)) return std::nullopt;
  std::ifstream f(p);
  const auto j = nlohmann::json::parse(f);
  Manifest m;
  m.written = j.at("written").get<std::vector<std::string>>();
  m.refused = j.at("refused").get<std::map<std::string, std::string>>();
  return m;
}

// max |a - b| / max |b|
double rel_diff(const dl::Tensor& a, const dl::Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const auto av = a.detach().to(dl::DType::Float64).contiguous().to_vector<double>();
  const auto bv = b.detach().to(dl::DType::Float64).contiguous().to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    num = std::max(num, std::abs(av[i] - bv[i]));
    den = std::max(den, std::abs(bv[i]));
  }
  return num / std::max(den, 1e-30);
}

constexpr double kTol = 1e-4;

// Runs every exported opset of `model`; returns how many ran.
int check_model(const std::string& model, const std::vector<int>& opsets, bool grads) {
  const auto m = manifest();
  if (!m) return -1;
  int ran = 0;
  for (int opset : opsets) {
    const std::string key = model + "_op" + std::to_string(opset);
    if (m->refused.count(key)) {
      MESSAGE(key << ": torch.onnx could not export it (" << m->refused.at(key) << "); not checked");
      continue;
    }
    INFO(key);
    REQUIRE(std::find(m->written.begin(), m->written.end(), key) != m->written.end());
    const fs::path dir = fixture_root() / key;
    auto net = dl::onnx::load((dir / "model.onnx").string());
    CHECK(net->opset() == opset);
    const dl::Tensor x = dl::onnx::read_tensor_proto((dir / "input.pb").string());
    const dl::Tensor y = dl::onnx::read_tensor_proto((dir / "output.pb").string());
    const dl::Tensor y1 = dl::onnx::read_tensor_proto((dir / "output_b1.pb").string());
    double d3, d1;
    {
      dl::NoGradGuard ng;
      d3 = rel_diff(net->forward(x), y);
      d1 = rel_diff(net->forward(x.narrow(0, 0, 1).contiguous()), y1);
    }
    MESSAGE(key << ": relative difference to PyTorch " << d3 << " (batch 3), " << d1 << " (batch 1)");
    CHECK(d3 <= kTol);
    CHECK(d1 <= kTol);
    if (grads) {
      // the state_dict keys are PyTorch's (num_batches_tracked aside: not in the ONNX file), with
      // PyTorch's values, and PyTorch's state_dict loads back into the imported model by name
      dl::TensorDict want_sd = dl::load_weights((dir / "state_dict.pth").string());
      std::erase_if(want_sd, [](const auto& kv) { return kv.first.find("num_batches_tracked") != std::string::npos; });
      std::vector<std::string> want_keys, got_keys;
      for (const auto& [k, v] : want_sd) want_keys.push_back(k);
      for (const auto& [k, v] : net->state_dict()) got_keys.push_back(k);
      std::sort(want_keys.begin(), want_keys.end());
      std::sort(got_keys.begin(), got_keys.end());
      CHECK(got_keys == want_keys);
      for (const auto& [k, v] : want_sd) {
        INFO(k);
        const bool is_buffer = k.find("running_") != std::string::npos;
        const dl::Tensor mine = is_buffer ? net->get_buffer(k) : net->get_parameter(k);
        CHECK(dl::allclose(mine, v, 0, 0));
      }
      {  // perturb, then load PyTorch's weights by name: the outputs are PyTorch's again
        dl::NoGradGuard ng;
        for (const auto& p : net->parameters()) dl::Tensor(p).mul_(0.5);
      }
      const auto res = net->load_state_dict(want_sd);
      CHECK(res.ok());
      dl::NoGradGuard ng;
      CHECK(rel_diff(net->forward(x), y) <= kTol);
    }
    if (grads) {
      const dl::Tensor r = dl::onnx::read_tensor_proto((dir / "grad_weight.pb").string());
      const dl::Tensor want = dl::onnx::read_tensor_proto((dir / "input_grad.pb").string());
      dl::Tensor xg = x.clone().requires_grad_(true);
      (net->forward(xg) * r).sum().backward();
      REQUIRE(xg.grad().defined());
      const double dg = rel_diff(xg.grad(), want);
      MESSAGE(key << ": input gradient relative difference " << dg);
      CHECK(dg <= kTol);
    }
    ++ran;
  }
  return ran;
}

}  // namespace

TEST_CASE("onnx import: torchvision resnet18 exported at opsets 9 and 13 matches PyTorch (batch 1 and 3)") {
  const int ran = check_model("resnet18", {9, 13}, false);
  if (ran < 0) DL_SKIP("fixture " << (fixture_root() / "manifest.json").string() << " is absent (make_onnx_import.py)");
  CHECK(ran == 2);
}

TEST_CASE("onnx import: torchvision mobilenet_v3_small (9, 17), shufflenet_v2_x0_5 (13), squeezenet1_1 (13) match PyTorch") {
  int ran = check_model("mobilenet_v3_small", {9, 17}, false);
  if (ran < 0) DL_SKIP("fixture " << (fixture_root() / "manifest.json").string() << " is absent (make_onnx_import.py)");
  ran += check_model("shufflenet_v2_x0_5", {13}, false);
  ran += check_model("squeezenet1_1", {13}, false);
  CHECK(ran == 4);
}

TEST_CASE("onnx import: conv/batchnorm/pool/flatten-chain model matches PyTorch at opsets 7-17, with gradients") {
  const int ran = check_model("mixed", {7, 9, 11, 13, 17}, true);
  if (ran < 0) DL_SKIP("fixture " << (fixture_root() / "manifest.json").string() << " is absent (make_onnx_import.py)");
  CHECK(ran == 5);
}

TEST_CASE("onnx import: elementwise/shape-op model matches PyTorch at opsets 9-17, with gradients") {
  // opset 7 is refused by torch.onnx itself (Erf needs opset 9): the manifest says so.
  const int ran = check_model("elementwise", {7, 9, 11, 13, 14, 17}, true);
  if (ran < 0) DL_SKIP("fixture " << (fixture_root() / "manifest.json").string() << " is absent (make_onnx_import.py)");
  CHECK(ran >= 5);
}

TEST_CASE("onnx import: an imported resnet18 fine-tunes (gradients reach every parameter, SGD changes them)") {
  const auto m = manifest();
  if (!m) DL_SKIP("fixture " << (fixture_root() / "manifest.json").string() << " is absent (make_onnx_import.py)");
  auto net = dl::onnx::load((fixture_root() / "resnet18_op13" / "model.onnx").string());
  const auto params = net->named_parameters();
  REQUIRE(params.size() > 10);
  CHECK(net->get_parameter("fc.weight").sizes() == dl::Shape{1000, 512});
  dl::Tensor x = dl::onnx::read_tensor_proto((fixture_root() / "resnet18_op13" / "input.pb").string()).narrow(0, 0, 2);
  dl::Tensor target = dl::from_vector<int64_t>({3, 7}, {2});
  dl::Tensor loss = dl::cross_entropy(net->forward(x.contiguous()), target);
  loss.backward();
  std::vector<dl::Tensor> before;
  for (const auto& [name, p] : params) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().abs().sum().item<double>() > 0);
    before.push_back(p.detach().clone());
  }
  {
    dl::NoGradGuard ng;
    for (const auto& [name, p] : params) dl::Tensor(p).add_(p.grad(), -1e-3);
  }
  size_t k = 0;
  for (const auto& [name, p] : params) CHECK_FALSE(dl::allclose(p, before[k++], 0, 0));
  dl::NoGradGuard ng;
  const double loss2 = dl::cross_entropy(net->forward(x.contiguous()), target).item<double>();
  MESSAGE("loss " << loss.item<double>() << " -> " << loss2 << " after one SGD step");
  CHECK(loss2 < loss.item<double>());
}
