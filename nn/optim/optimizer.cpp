#include "nn/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace dl::optim {

using nlohmann::json;

Optimizer::Optimizer(ParamGroup defaults, bool fused) : defaults_(std::move(defaults)), fused_(fused) {
  defaults_.params.clear();
}

void Optimizer::init_groups(std::vector<ParamGroupSpec> groups) {
  // The defaults are checked too, except a missing lr (SGD's is required, but a group may give it).
  ParamGroup d = defaults_;
  if (std::isnan(d.lr)) d.lr = 0.0;
  validate(d);
  if (groups.empty()) fail("{}: got an empty parameter list", name());
  for (auto& g : groups) add_param_group(std::move(g.params), g.options);
}

void Optimizer::add_param_group(std::vector<Tensor> params, const GroupOptions& o) {
  if (params.empty()) fail("{}: got an empty parameter list", name());
  std::unordered_set<const TensorImpl*> existing;
  for (const auto& g : groups_)
    for (const auto& p : g.params) existing.insert(p.impl_ptr().get());
  std::unordered_set<const TensorImpl*> mine;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    if (!p.defined()) fail("{}: parameter {} of the new group is an undefined tensor", name(), i);
    if (!p.is_leaf()) fail("{}: can't optimize a non-leaf tensor (parameter {} of the new group has a grad_fn)", name(), i);
    if (!is_floating(p.dtype()))
      fail("{}: parameter {} of the new group is {}; only float32/float64 tensors can be optimized", name(), i,
           dtype_name(p.dtype()));
    if (existing.count(p.impl_ptr().get()))
      fail("{}: some parameters appear in more than one parameter group (parameter {} of the new group)", name(), i);
    if (!mine.insert(p.impl_ptr().get()).second)
      fail("{}: the new parameter group lists parameter {} twice", name(), i);
  }
  ParamGroup g = defaults_;
  g.params = std::move(params);
  if (o.lr) g.lr = *o.lr;
  if (o.weight_decay) g.weight_decay = *o.weight_decay;
  if (o.momentum) g.momentum = *o.momentum;
  if (o.dampening) g.dampening = *o.dampening;
  if (o.nesterov) g.nesterov = *o.nesterov;
  if (o.betas) g.betas = *o.betas;
  if (o.eps) g.eps = *o.eps;
  if (o.amsgrad) g.amsgrad = *o.amsgrad;
  validate(g);
  groups_.push_back(std::move(g));
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

const ParamState& Optimizer::state(const Tensor& param) const {
  static const ParamState empty_state;
  auto it = state_.find(param.impl_ptr().get());
  return it == state_.end() ? empty_state : it->second;
}

double Optimizer::increment_step(ParamState& st) {
  Tensor& s = st["step"];
  if (!s.defined()) s = scalar_tensor(0.0, DType::Float64);
  double* v = s.data_ptr<double>();
  *v += 1.0;
  return *v;
}

void Optimizer::step() {
  // Everything that can fail is checked before the first parameter changes.
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    validate(groups_[gi]);
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      const Tensor& p = groups_[gi].params[i];
      Tensor g = p.grad();
      if (!g.defined()) continue;
      if (g.sizes() != p.sizes() || g.dtype() != p.dtype() || g.device() != p.device())
        fail("{}.step: group {} parameter {}: gradient is {} {} on {}, the parameter is {} {} on {}", name(), gi, i,
             dtype_name(g.dtype()), shape_str(g.sizes()), g.device().str(), dtype_name(p.dtype()), shape_str(p.sizes()),
             p.device().str());
      auto it = state_.find(p.impl_ptr().get());
      if (it == state_.end()) continue;
      for (const auto& [k, t] : it->second) {
        if (k == "step") continue;
        if (t.device() != p.device() || t.dtype() != p.dtype() || t.sizes() != p.sizes())
          fail("{}.step: group {} parameter {}: its state '{}' is {} {} on {} but the parameter is now {} {} on {}; "
               "create the optimizer after moving or converting the model",
               name(), gi, i, k, dtype_name(t.dtype()), shape_str(t.sizes()), t.device().str(), dtype_name(p.dtype()),
               shape_str(p.sizes()), p.device().str());
      }
    }
  }
  NoGradGuard no_grad;
  for (auto& g : groups_) step_group(g);
  ++step_count_;
}

// ---- state_dict ---------------------------------------------------------------------------------------

OptimizerState Optimizer::state_dict() const {
  OptimizerState out;
  out.meta["optimizer"] = name();
  json groups = json::array();
  int64_t index = 0;
  for (const auto& g : groups_) {
    json jg = group_to_json(g);
    if (g.initial_lr) jg["initial_lr"] = *g.initial_lr;
    json ids = json::array();
    for (const auto& p : g.params) {
      ids.push_back(index);
      auto it = state_.find(p.impl_ptr().get());
      if (it != state_.end())
        for (const auto& [k, t] : it->second) out.tensors.emplace_back(fmt::format("state.{}.{}", index, k), t.detach());
      ++index;
    }
    jg["params"] = ids;
    groups.push_back(jg);
  }
  out.meta["param_groups"] = groups;
  return out;
}

double json_number(const json& j, const char* key, const std::string& who) {
  if (!j.contains(key) || !j[key].is_number()) fail("{}.load_state_dict: param group lacks a number '{}'", who, key);
  return j[key].get<double>();
}

bool json_bool(const json& j, const char* key, const std::string& who) {
  if (!j.contains(key) || !j[key].is_boolean()) fail("{}.load_state_dict: param group lacks a boolean '{}'", who, key);
  return j[key].get<bool>();
}

void Optimizer::load_state_dict(const OptimizerState& st) {
  const std::string who = name();
  const json& meta = st.meta;
  if (!meta.is_object() || !meta.contains("optimizer") || !meta["optimizer"].is_string())
    fail("{}.load_state_dict: meta has no \"optimizer\" name", who);
  if (meta["optimizer"].get<std::string>() != who)
    fail("{}.load_state_dict: the state was saved by {}, not {}", who, meta["optimizer"].get<std::string>(), who);
  if (!meta.contains("param_groups") || !meta["param_groups"].is_array())
    fail("{}.load_state_dict: meta has no \"param_groups\" list", who);
  const json& saved = meta["param_groups"];
  if (saved.size() != groups_.size())
    fail("{}.load_state_dict: the state has {} parameter groups, the optimizer has {}", who, saved.size(), groups_.size());

  // New groups (hyper-parameters) and the parameter each saved index refers to.
  std::vector<ParamGroup> new_groups = groups_;
  std::vector<const Tensor*> by_index;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const json& jg = saved[gi];
    if (!jg.is_object() || !jg.contains("params") || !jg["params"].is_array())
      fail("{}.load_state_dict: param group {} has no \"params\" list", who, gi);
    if (jg["params"].size() != groups_[gi].params.size())
      fail("{}.load_state_dict: param group {} has {} parameters in the state, {} in the optimizer", who, gi,
           jg["params"].size(), groups_[gi].params.size());
    group_from_json(jg, new_groups[gi]);
    new_groups[gi].initial_lr = jg.contains("initial_lr") && jg["initial_lr"].is_number()
                                    ? std::optional<double>(jg["initial_lr"].get<double>())
                                    : std::nullopt;
    validate(new_groups[gi]);
    const json& ids = jg["params"];
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!ids[i].is_number_integer() || ids[i].get<int64_t>() != static_cast<int64_t>(by_index.size()))
        fail("{}.load_state_dict: param group {} numbers its parameters {}, expected consecutive indices from {}", who,
             gi, ids.dump(), by_index.size() - i);
      by_index.push_back(&groups_[gi].params[i]);
    }
  }

  auto keys = state_keys();
  std::unordered_map<const TensorImpl*, ParamState> new_state;
  for (const auto& [full, t] : st.tensors) {
    // "state.<index>.<key>"
    size_t dot1 = full.find('.'), dot2 = dot1 == std::string::npos ? dot1 : full.find('.', dot1 + 1);
    if (full.rfind("state.", 0) != 0 || dot2 == std::string::npos)
      fail("{}.load_state_dict: tensor key '{}' is not of the form state.<index>.<name>", who, full);
    std::string idx_str = full.substr(dot1 + 1, dot2 - dot1 - 1), key = full.substr(dot2 + 1);
    int64_t idx = -1;
    try {
      size_t used = 0;
      idx = std::stoll(idx_str, &used);
      if (used != idx_str.size()) idx = -1;
    } catch (const std::exception&) {
    }
    if (idx < 0 || idx >= static_cast<int64_t>(by_index.size()))
      fail("{}.load_state_dict: '{}' names parameter {}, but there are {} parameters", who, full, idx_str, by_index.size());
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      fail("{}.load_state_dict: '{}': {} keeps no state named '{}'", who, full, who, key);
    if (!t.defined()) fail("{}.load_state_dict: '{}' is an undefined tensor", who, full);
    const Tensor& p = *by_index[static_cast<size_t>(idx)];
    Tensor value;
    if (key == "step") {
      if (t.numel() != 1) fail("{}.load_state_dict: '{}' must hold one number, got shape {}", who, full, shape_str(t.sizes()));
      value = scalar_tensor(t.item<double>(), DType::Float64);
    } else {
      if (t.sizes() != p.sizes())
        fail("{}.load_state_dict: '{}' has shape {}, its parameter has {}", who, full, shape_str(t.sizes()),
             shape_str(p.sizes()));
      value = ops::clone(ops::to_device(ops::to_dtype(t, p.dtype()), p.device()));
    }
    new_state[p.impl_ptr().get()][key] = value;
  }
  groups_ = std::move(new_groups);
  state_ = std::move(new_state);
}

}  // namespace dl::optim
