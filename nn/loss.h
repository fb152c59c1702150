#pragma once
// Loss modules. They take (prediction, target), so they are called with two arguments.
#include "autograd/functional.h"
#include "nn/module.h"

namespace dl::nn {

// torch.nn.CrossEntropyLoss: logits (N, C), int64 targets (N). The optional class weights are a
// buffer named "weight", as in PyTorch.
class CrossEntropyLoss : public Module {
 public:
  explicit CrossEntropyLoss(CrossEntropyOptions options = {});
  using Module::forward;  // the one-argument form throws: a loss needs a target
  Tensor forward(const Tensor& logits, const Tensor& target);
  Tensor operator()(const Tensor& logits, const Tensor& target) { return forward(logits, target); }

  CrossEntropyOptions options;
};

}  // namespace dl::nn
