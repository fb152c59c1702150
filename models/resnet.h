#pragma once
// ResNet18 exactly as torchvision builds it: the same modules, parameter and buffer names
// (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0, ..., fc) and shapes, so torchvision's
// state dicts load by name.
#include <memory>

#include "models/classifier.h"
#include "nn/layers.h"

namespace dl::models {

class BasicBlock : public nn::Module {
 public:
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;  // 1x1 conv + BN when the shape changes, else null
};

class ResNet18 : public Classifier {
 public:
  explicit ResNet18(int64_t num_classes = 1000);

  Tensor forward_to_cam_layer(const Tensor& x) override;      // layer4's output (N, 512, h, w)
  Tensor forward_from_cam_layer(const Tensor& act) override;  // avgpool, flatten, fc
  Tensor features(const Tensor& x);                           // pooled 512-d features (N, 512)
  Tensor head(const Tensor& features) { return (*fc)(features); }
  int64_t num_classes() const override { return fc->out_features; }
  std::string cam_layer_name() const override { return "layer4"; }

  // A new, freshly initialised fc with `num_classes` outputs (torchvision's Linear init).
  void replace_head(int64_t num_classes);
  // Freezes every parameter except fc's (requires_grad false), as for linear probing.
  void freeze_backbone();

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::MaxPool2d> maxpool;
  std::shared_ptr<nn::Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<nn::Linear> fc;
};

// Loads an ImageNet (or any) ResNet18 state dict into `model`, keeping every backbone tensor.
// `fc.*` is loaded only when its shape matches; otherwise it is left out and the returned note
// says so. The published torchvision file has no num_batches_tracked buffers: those stay 0.
// Any other missing, unexpected or mismatched key is a dl::Error listing them all.
std::string load_resnet18_weights(ResNet18& model, const std::string& path);

}  // namespace dl::models
