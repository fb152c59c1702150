#include "nn/loss.h"

namespace dl::nn {

CrossEntropyLoss::CrossEntropyLoss(CrossEntropyOptions opt) : Module("CrossEntropyLoss"), options(std::move(opt)) {
  if (!(options.label_smoothing >= 0 && options.label_smoothing <= 1))
    fail("CrossEntropyLoss: label_smoothing must be in [0, 1], got {}", options.label_smoothing);
  if (options.weight.defined()) {
    if (options.weight.dim() != 1) fail("CrossEntropyLoss: weight must be 1-D (one per class), got shape {}", shape_str(options.weight.sizes()));
    // Registered as a buffer so to() moves it and the state_dict carries it, as in PyTorch; the
    // options keep the same tensor (one impl), so a move is seen by forward.
    register_buffer("weight", options.weight);
  }
}

Tensor CrossEntropyLoss::forward(const Tensor& logits, const Tensor& target) {
  return cross_entropy(logits, target, options);
}

}  // namespace dl::nn
