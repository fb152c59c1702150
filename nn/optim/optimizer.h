#pragma once
// The optimizer base: parameter groups with their hyper-parameters, per-parameter state, step()
// under no-grad, and a state_dict for resuming. Semantics follow torch.optim (1.13): parameters
// whose .grad is undefined are skipped; zero_grad() drops the gradients (set_to_none).
#include <array>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/tensor.h"

namespace dl::optim {

// One group of parameters and its hyper-parameters. It holds every optimizer's fields; each
// optimizer uses its own (SGD: momentum, dampening, nesterov; Adam/AdamW: betas, eps, amsgrad) and
// its state_dict saves only those. Schedulers and users may change `lr` (or any field) between
// steps; step() re-validates the groups before touching anything.
struct ParamGroup {
  std::vector<Tensor> params;
  double lr = 0.0;
  double weight_decay = 0.0;
  // SGD
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  // Adam, AdamW
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  bool amsgrad = false;
  // The lr a scheduler started from (PyTorch's group["initial_lr"]); set by the first scheduler.
  std::optional<double> initial_lr;
};

// Per-group overrides for add_param_group(); what is unset takes the optimizer's defaults.
// (Every member has an initialiser so `{.lr = 0.01}` compiles without -Wextra warnings.)
struct GroupOptions {
  std::optional<double> lr = std::nullopt;
  std::optional<double> weight_decay = std::nullopt;
  std::optional<double> momentum = std::nullopt;
  std::optional<double> dampening = std::nullopt;
  std::optional<bool> nesterov = std::nullopt;
  std::optional<std::array<double, 2>> betas = std::nullopt;
  std::optional<double> eps = std::nullopt;
  std::optional<bool> amsgrad = std::nullopt;
};

struct ParamGroupSpec {
  std::vector<Tensor> params = {};
  GroupOptions options = {};
};

// State of one parameter, by PyTorch's names: "step" (0-d float64, CPU), "momentum_buffer",
// "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (the parameter's shape, dtype and device).
using ParamState = std::map<std::string, Tensor>;

// A serialisable snapshot, laid out like torch's optimizer.state_dict():
//   tensors: ("state.<index>.<key>", tensor), index = the parameter's position counting through
//            the groups in order (PyTorch's numbering);
//   meta:    {"optimizer": "Adam", "param_groups": [{"lr": .., "betas": [..], ..., "params": [0, 1]}]}.
// The tensors are aliases of the live state (no copy), as in PyTorch: write them out (or clone
// them) before the next step.
struct OptimizerState {
  std::vector<std::pair<std::string, Tensor>> tensors;
  nlohmann::json meta;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string name() const = 0;  // "SGD", "Adam", "AdamW"

  // Adds a group; its options default to the optimizer's. Throws dl::Error for an empty list, a
  // non-leaf or non-floating tensor, a parameter already in a group, or a bad hyper-parameter.
  void add_param_group(std::vector<Tensor> params, const GroupOptions& options = {});
  void add_param_group(const ParamGroupSpec& spec) { add_param_group(spec.params, spec.options); }
  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  const ParamGroup& defaults() const { return defaults_; }

  void zero_grad();  // every parameter's gradient becomes undefined
  // One update of every parameter that has a gradient, under NoGradGuard, in place. Validates
  // all groups and gradients first, so a bad setting throws before anything changes.
  void step();
  int64_t step_count() const { return step_count_; }  // step() calls so far (not saved)

  // The state of `param` (empty when it has not been stepped yet).
  const ParamState& state(const Tensor& param) const;

  OptimizerState state_dict() const;
  // Restores hyper-parameters and per-parameter state. The groups must have the same sizes as
  // when saved; state tensors must match their parameter's shape. Copies the tensors (to the
  // parameter's dtype and device). All checks happen before anything is changed.
  void load_state_dict(const OptimizerState& state);

 protected:
  Optimizer(ParamGroup defaults, bool fused);
  // Adds the constructor's groups (after the derived class is ready to validate).
  void init_groups(std::vector<ParamGroupSpec> groups);
  // Throws dl::Error naming the optimizer and the bad value.
  virtual void validate(const ParamGroup& g) const = 0;
  virtual void step_group(ParamGroup& g) = 0;
  // The hyper-parameters this optimizer saves, and how they are read back.
  virtual nlohmann::json group_to_json(const ParamGroup& g) const = 0;
  virtual void group_from_json(const nlohmann::json& j, ParamGroup& g) const = 0;
  virtual std::vector<std::string> state_keys() const = 0;

  ParamState& mutable_state(const Tensor& param) { return state_[param.impl_ptr().get()]; }
  // step tensor helpers: a 0-d float64 CPU tensor
  static double increment_step(ParamState& st);

  ParamGroup defaults_;
  bool fused_;  // CPU: one fused pass per parameter; off (or off the CPU) = a sequence of tensor ops
  std::vector<ParamGroup> groups_;
  std::unordered_map<const TensorImpl*, ParamState> state_;
  int64_t step_count_ = 0;
};

// Reads an optional hyper-parameter from a saved group (helpers for group_from_json).
double json_number(const nlohmann::json& j, const char* key, const std::string& who);
bool json_bool(const nlohmann::json& j, const char* key, const std::string& who);

}  // namespace dl::optim
