#pragma once
// Shared by the ONNX tests (export, round trip, ONNX Runtime).
#include <string>

#include "autograd/node.h"
#include "nn/module.h"
#include "tensor/ops.h"

namespace dl::test {

// Moves every batch norm away from the identity (running statistics, and the affine parameters of
// modules named "bn*" or the ".1." of a conv-BN Sequential), so that a wrong epsilon, a swapped
// mean and variance or a missing running statistic changes the outputs.
inline void randomize_batch_norms(nn::Module& m, uint64_t seed) {
  Generator g(seed);
  NoGradGuard ng;
  for (const auto& [name, t] : m.named_buffers()) {
    if (name.ends_with("running_mean")) ops::copy_(t, randn(t.sizes(), {}, &g) * 0.1);
    if (name.ends_with("running_var")) ops::copy_(t, rand(t.sizes(), {}, &g) + 0.5);
  }
  for (const auto& [name, t] : m.named_parameters())
    if (name.find("bn") != std::string::npos || name.find(".1.") != std::string::npos)
      ops::copy_(t, t + randn(t.sizes(), {}, &g) * 0.1);
}

}  // namespace dl::test
