#pragma once
// What the study's programs need from an image classifier, beyond forward(): a split at the
// layer Grad-CAM looks at. Grad-CAM runs forward_to_cam_layer, makes the activation a leaf that
// requires grad, runs forward_from_cam_layer and back-propagates a class score: the leaf's .grad
// is the gradient at that layer, with no hooks needed.
#include <string>

#include "nn/module.h"

namespace dl::models {

class Classifier : public nn::Module {
 public:
  using nn::Module::Module;
  virtual Tensor forward_to_cam_layer(const Tensor& x) = 0;       // (N, C, h, w)
  virtual Tensor forward_from_cam_layer(const Tensor& act) = 0;   // logits (N, classes)
  Tensor forward(const Tensor& x) override { return forward_from_cam_layer(forward_to_cam_layer(x)); }
  virtual int64_t num_classes() const = 0;
  virtual std::string cam_layer_name() const = 0;
};

}  // namespace dl::models
