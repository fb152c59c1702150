#include "models/scratch_cnn.h"

namespace dl::models {

namespace {
std::shared_ptr<nn::Sequential> block(int64_t in, int64_t out, bool maxpool) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::make_shared<nn::Conv2d>(
      nn::Conv2dConfig{.in_channels = in, .out_channels = out, .kernel_size = 3, .padding = 1}));
  s->push_back(std::make_shared<nn::BatchNorm2d>(out));
  s->push_back(std::make_shared<nn::ReLU>());
  if (maxpool) s->push_back(std::make_shared<nn::MaxPool2d>(2));
  return s;
}
}  // namespace

ScratchCnn::ScratchCnn(const ScratchCnnConfig& c) : Classifier("ScratchCnn"), cfg(c) {
  for (int64_t ch : cfg.channels)
    if (ch <= 0) fail("ScratchCnn: channel counts must be positive");
  if (cfg.num_classes <= 0) fail("ScratchCnn: num_classes must be positive, got {}", cfg.num_classes);
  block1 = register_module("block1", block(cfg.in_channels, cfg.channels[0], true));
  block2 = register_module("block2", block(cfg.channels[0], cfg.channels[1], true));
  block3 = register_module("block3", block(cfg.channels[1], cfg.channels[2], true));
  // block 4's pooling is the global average pool below, after the Grad-CAM layer
  block4 = register_module("block4", block(cfg.channels[2], cfg.channels[3], false));
  pool = register_module("pool", std::make_shared<nn::AdaptiveAvgPool2d>(1));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(cfg.dropout));
  fc = register_module("fc", std::make_shared<nn::Linear>(cfg.channels[3], cfg.num_classes));
}

Tensor ScratchCnn::forward_to_cam_layer(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != cfg.in_channels)
    fail("ScratchCnn expects input of shape (N, {}, H, W), got {}", cfg.in_channels, shape_str(x.sizes()));
  if (x.size(2) < 8 || x.size(3) < 8)
    fail("ScratchCnn needs images of at least 8x8 pixels (three 2x2 poolings), got {}x{}", x.size(2), x.size(3));
  // each block is conv, bn, relu (, max pool): Sequential runs bn + relu as one fused pass
  return (*block4)((*block3)((*block2)((*block1)(x))));
}

Tensor ScratchCnn::forward_from_cam_layer(const Tensor& act) {
  return (*fc)((*dropout)((*pool)(act).flatten(1)));
}

}  // namespace dl::models
