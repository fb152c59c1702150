#include "models/resnet.h"

#include "autograd/node.h"
#include "models/weights.h"

namespace dl::models {

namespace {
std::shared_ptr<nn::Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<nn::Conv2d>(nn::Conv2dConfig{
      .in_channels = in, .out_channels = out, .kernel_size = 3, .stride = stride, .padding = 1, .bias = false});
}
}  // namespace

BasicBlock::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride) : nn::Module("BasicBlock") {
  conv1 = register_module("conv1", conv3x3(in_planes, planes, stride));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  relu = register_module("relu", std::make_shared<nn::ReLU>());
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  if (stride != 1 || in_planes != planes) {
    downsample = register_module(
        "downsample",
        std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
            std::make_shared<nn::Conv2d>(nn::Conv2dConfig{
                .in_channels = in_planes, .out_channels = planes, .kernel_size = 1, .stride = stride, .bias = false}),
            std::make_shared<nn::BatchNorm2d>(planes)}));
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  // bn + relu fused, and bn2 + the residual add + relu fused (the relu module holds nothing); for inference
  // both fold into the convolutions' output writes (nn::BatchNorm2d::forward_conv)
  Tensor out = bn1->forward_conv(*conv1, x, true);
  Tensor identity = downsample ? (*downsample)(x) : x;
  return bn2->forward_conv(*conv2, out, true, identity);
}

ResNet18::ResNet18(int64_t num_classes) : Classifier("ResNet") {
  if (num_classes <= 0) fail("ResNet18: num_classes must be positive, got {}", num_classes);
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(nn::Conv2dConfig{
                                       .in_channels = 3, .out_channels = 64, .kernel_size = 7, .stride = 2, .padding = 3, .bias = false}));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(64));
  relu = register_module("relu", std::make_shared<nn::ReLU>());
  maxpool = register_module("maxpool", std::make_shared<nn::MaxPool2d>(3, 2, 1));
  auto make_layer = [](int64_t in, int64_t planes, int64_t stride) {
    auto seq = std::make_shared<nn::Sequential>();
    seq->push_back(std::make_shared<BasicBlock>(in, planes, stride));
    seq->push_back(std::make_shared<BasicBlock>(planes, planes, 1));
    return seq;
  };
  layer1 = register_module("layer1", make_layer(64, 64, 1));
  layer2 = register_module("layer2", make_layer(64, 128, 2));
  layer3 = register_module("layer3", make_layer(128, 256, 2));
  layer4 = register_module("layer4", make_layer(256, 512, 2));
  avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(1));
  fc = register_module("fc", std::make_shared<nn::Linear>(512, num_classes));
  // torchvision: kaiming_normal_(fan_out, relu) for convs; BN weight 1, bias 0
  for (const auto& [name, m] : named_modules()) {
    if (auto c = std::dynamic_pointer_cast<nn::Conv2d>(m)) {
      NoGradGuard ng;
      int64_t fan_out = c->cfg.out_channels * c->cfg.kernel_size.h * c->cfg.kernel_size.w;
      c->weight.copy_(randn(c->weight.sizes()) * std::sqrt(2.0 / static_cast<double>(fan_out)));
    }
  }
}

Tensor ResNet18::forward_to_cam_layer(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != 3)
    fail("ResNet18 expects input of shape (N, 3, H, W), got {}", shape_str(x.sizes()));
  if (x.size(2) < 32 || x.size(3) < 32)
    fail("ResNet18 needs images of at least 32x32 pixels (it downsamples 32 times), got {}x{}", x.size(2), x.size(3));
  Tensor h = (*maxpool)(bn1->forward_conv(*conv1, x, true));  // bn1 + relu fused (into conv1 for inference)
  return (*layer4)((*layer3)((*layer2)((*layer1)(h))));
}

Tensor ResNet18::forward_from_cam_layer(const Tensor& act) { return head((*avgpool)(act).flatten(1)); }

Tensor ResNet18::features(const Tensor& x) { return (*avgpool)(forward_to_cam_layer(x)).flatten(1); }

void ResNet18::replace_head(int64_t n) {
  if (n <= 0) fail("replace_head: num_classes must be positive, got {}", n);
  fc = replace_module("fc", std::make_shared<nn::Linear>(512, n));
}

void ResNet18::freeze_backbone() {
  requires_grad_(false);
  fc->requires_grad_(true);
}

std::string load_resnet18_weights(ResNet18& model, const std::string& path) {
  TensorDict file = load_weights(path);
  nn::StateDict backbone;
  const Tensor* fc_w = nullptr;
  for (const auto& [name, t] : file) {
    if (name == "fc.weight") fc_w = &t;
    if (name.rfind("fc.", 0) != 0) backbone.emplace_back(name, t);
  }
  bool fc_fits = fc_w && fc_w->sizes() == model.fc->weight.sizes();
  if (fc_fits)
    for (const auto& [name, t] : file)
      if (name.rfind("fc.", 0) == 0) backbone.emplace_back(name, t);
  nn::LoadResult r = model.load_state_dict(backbone, false);
  std::vector<std::string> problems;
  for (const auto& k : r.missing_keys) {
    bool tolerated = k.size() > 20 && k.substr(k.size() - 20) == ".num_batches_tracked";
    if (k.rfind("fc.", 0) == 0 && !fc_fits) tolerated = true;
    if (!tolerated) problems.push_back("missing: " + k);
  }
  for (const auto& k : r.unexpected_keys) problems.push_back("unexpected: " + k);
  for (const auto& m : r.mismatched)
    problems.push_back(fmt::format("shape mismatch: {} (model {}, file {})", m.name, shape_str(m.expected), shape_str(m.got)));
  if (!problems.empty())
    fail("'{}' does not hold ResNet18 weights in torchvision's layout:\n  {}", path, fmt::join(problems, "\n  "));
  if (fc_fits) return fmt::format("loaded all {} tensors from '{}'", file.size(), path);
  return fmt::format("loaded {} backbone tensors from '{}'; fc was left out ({} in the file, a fresh {}-class head in "
                     "the model)",
                     backbone.size(), path, fc_w ? shape_str(fc_w->sizes()) : std::string("absent"), model.num_classes());
}

}  // namespace dl::models
