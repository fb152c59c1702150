#pragma once
// torch.optim.SGD (1.13), step for step:
//   d = grad + weight_decay * p
//   momentum != 0: buf = d on the first step, else buf = momentum * buf + (1 - dampening) * d;
//                  d = nesterov ? d + momentum * buf : buf
//   p -= lr * d
#include <cmath>
#include <limits>

#include "nn/optim/optimizer.h"

namespace dl::optim {

struct SGDOptions {
  double lr = std::numeric_limits<double>::quiet_NaN();  // required (here or per group), as in PyTorch
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  // CPU: one fused pass per parameter. false (and any non-CPU device) runs the same update as a
  // sequence of tensor ops. Not part of the saved state.
  bool fused = true;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  SGD(std::vector<ParamGroupSpec> groups, const SGDOptions& defaults);
  std::string name() const override { return "SGD"; }

 protected:
  void validate(const ParamGroup& g) const override;
  void step_group(ParamGroup& g) override;
  nlohmann::json group_to_json(const ParamGroup& g) const override;
  void group_from_json(const nlohmann::json& j, ParamGroup& g) const override;
  std::vector<std::string> state_keys() const override { return {"momentum_buffer"}; }
};

}  // namespace dl::optim
