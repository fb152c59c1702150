// ResNet18 against torchvision: weights saved by torch.save (and as safetensors) load by name and
// give torchvision's eval-mode logits and pooled features.
#include "autograd/node.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "test_util.h"

using namespace dl;

namespace {
std::string fx(const std::string& f) { return test::fixtures_dir() + "/" + f; }
}  // namespace

TEST_CASE("ResNet18 loads torchvision's .pth and matches its eval-mode logits") {
  models::ResNet18 m(1000);
  std::string note = models::load_resnet18_weights(m, fx("resnet18_random.pth"));
  CHECK(note.find("loaded all 122 tensors") != std::string::npos);
  m.eval();
  NoGradGuard ng;
  Tensor x = test::fixture("resnet", "input");
  // within 1e-4 relative to the logits' scale
  Tensor expected = test::fixture("resnet", "logits");
  double scale = expected.abs().max().item<double>();
  CHECK_CLOSE(m(x), expected, 1e-4, 1e-4 * scale);
  CHECK_CLOSE(m.features(x), test::fixture("resnet", "features"), 1e-4, 1e-5);
}

TEST_CASE("ResNet18 loads the same weights from safetensors") {
  models::ResNet18 m(1000);
  models::load_resnet18_weights(m, fx("resnet18_random.safetensors"));
  m.eval();
  NoGradGuard ng;
  Tensor expected = test::fixture("resnet", "logits");
  CHECK_CLOSE(m(test::fixture("resnet", "input")), expected, 1e-4, 1e-4 * expected.abs().max().item<double>());
}

TEST_CASE("ImageNet weights into a 10-class ResNet18 keep the backbone and leave fc out") {
  models::ResNet18 m(10);
  std::string note = models::load_resnet18_weights(m, fx("resnet18_nobt.pth"));  // no num_batches_tracked, as published
  CHECK(note.find("fc was left out") != std::string::npos);
  CHECK(note.find("[1000, 512]") != std::string::npos);
  m.eval();
  NoGradGuard ng;
  CHECK_CLOSE(m.features(test::fixture("resnet", "input")), test::fixture("resnet", "features"), 1e-4, 1e-5);
  CHECK(m(test::fixture("resnet", "input")).sizes() == Shape{2, 10});
}
