#pragma once
// torch.optim.Adam and AdamW (1.13, single-tensor path), step for step. With t the parameter's
// step count, bc1 = 1 - beta1^t, bc2 = 1 - beta2^t:
//   Adam:  g += weight_decay * p                      (L2, coupled)
//   AdamW: p *= 1 - lr * weight_decay                 (decoupled)
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
//   amsgrad: v_max = max(v_max, v), used in place of v below
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
#include <array>

#include "nn/optim/optimizer.h"

namespace dl::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  bool fused = true;  // see SGDOptions::fused
};

struct AdamWOptions {
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool fused = true;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& options = {});
  Adam(std::vector<ParamGroupSpec> groups, const AdamOptions& defaults);
  std::string name() const override { return decoupled_ ? "AdamW" : "Adam"; }

 protected:
  Adam(std::vector<ParamGroupSpec> groups, const AdamWOptions& defaults, bool decoupled);
  void validate(const ParamGroup& g) const override;
  void step_group(ParamGroup& g) override;
  nlohmann::json group_to_json(const ParamGroup& g) const override;
  void group_from_json(const nlohmann::json& j, ParamGroup& g) const override;
  std::vector<std::string> state_keys() const override { return {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}; }

 private:
  bool decoupled_ = false;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& options = {});
  AdamW(std::vector<ParamGroupSpec> groups, const AdamWOptions& defaults);
};

}  // namespace dl::optim
