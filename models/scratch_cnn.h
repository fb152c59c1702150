#pragma once
// The study's CNN trained from scratch on 1x28x28 Fashion-MNIST images: four conv blocks
// (3x3 conv, batch norm, ReLU, pooling) and a dropout + linear head.
//
//   block  conv (pad 1)     pooling            output
//   1      1 -> c1          max 2x2            c1 x 14 x 14
//   2      c1 -> c2         max 2x2            c2 x 7 x 7
//   3      c2 -> c3         max 2x2            c3 x 3 x 3
//   4      c3 -> c4         global average     c4 x 1 x 1
//   head   dropout(p), linear c4 -> classes
//
// The defaults (48, 96, 256, 512) give 1,450,602 parameters, the study's "about 1.5M", with
// most of them in the cheap low-resolution blocks.
#include <array>
#include <memory>

#include "models/classifier.h"
#include "nn/layers.h"

namespace dl::models {

struct ScratchCnnConfig {
  std::array<int64_t, 4> channels{48, 96, 256, 512};
  int64_t num_classes = 10;
  double dropout = 0.3;
  int64_t in_channels = 1;
};

class ScratchCnn : public Classifier {
 public:
  explicit ScratchCnn(const ScratchCnnConfig& cfg = {});
  Tensor forward_to_cam_layer(const Tensor& x) override;      // block 4's activation (N, c4, 3, 3)
  Tensor forward_from_cam_layer(const Tensor& act) override;  // pool, dropout, fc
  int64_t num_classes() const override { return cfg.num_classes; }
  std::string cam_layer_name() const override { return "block4"; }

  ScratchCnnConfig cfg;
  // conv, bn, relu, (max pool); bn + relu run fused (nn::Sequential's fusion), keys block1.0.weight, ...
  std::shared_ptr<nn::Sequential> block1, block2, block3, block4;
  std::shared_ptr<nn::AdaptiveAvgPool2d> pool;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> fc;
};

}  // namespace dl::models
