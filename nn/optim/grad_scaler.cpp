#include "nn/optim/grad_scaler.h"

#include <cmath>
#include <map>

#include "autograd/node.h"
#include "tensor/error.h"

namespace dl::optim {

namespace {

void check_options(const GradScalerOptions& o, const char* who) {
  if (!(o.init_scale > 0) || !std::isfinite(o.init_scale))
    fail("{}: the scale must be positive and finite, got {}", who, o.init_scale);
  if (!(o.growth_factor > 1) || !std::isfinite(o.growth_factor))
    fail("{}: growth_factor must be above 1, got {}", who, o.growth_factor);
  if (!(o.backoff_factor > 0 && o.backoff_factor < 1))
    fail("{}: backoff_factor must be in (0, 1), got {}", who, o.backoff_factor);
  if (o.growth_interval < 1) fail("{}: growth_interval must be at least 1, got {}", who, o.growth_interval);
}

}  // namespace

GradScaler::GradScaler(GradScalerOptions options)
    : options_(options), enabled_(options.enabled), scale_(options.init_scale) {
  if (enabled_) check_options(options_, "GradScaler");
}

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!enabled_) return loss;
  return loss * scale_;
}

void GradScaler::unscale_(Optimizer& optimizer) {
  if (!enabled_) return;
  if (unscaled_.count(&optimizer))
    fail("GradScaler::unscale_: already called on this {} optimizer since the last update()", optimizer.name());
  NoGradGuard ng;
  const double inv = 1.0 / scale_;
  // g * 0 is 0 where g is finite and NaN where it is inf or NaN: summed (one 0-d tensor per device,
  // one host sync each), NaN means some gradient was not finite, and finite sums never overflow.
  std::map<std::pair<int, int>, Tensor> checks;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      g.mul_(inv);
      Tensor s = (g * 0.0).sum().to(DType::Float64);
      const auto key = std::make_pair(static_cast<int>(g.device().type), g.device().index);
      auto it = checks.find(key);
      if (it == checks.end())
        checks.emplace(key, s);
      else
        it->second = it->second + s;
    }
  bool found = false;
  for (auto& [key, s] : checks) found = found || !std::isfinite(s.item<double>());
  unscaled_[&optimizer] = found;
}

bool GradScaler::step(Optimizer& optimizer) {
  if (!enabled_) {
    optimizer.step();
    return true;
  }
  if (!unscaled_.count(&optimizer)) unscale_(optimizer);
  if (unscaled_.at(&optimizer)) return false;  // inf/NaN: skip, update() backs off
  optimizer.step();
  return true;
}

bool GradScaler::found_inf() const {
  for (const auto& [opt, found] : unscaled_)
    if (found) return true;
  return false;
}

void GradScaler::update() {
  if (!enabled_) return;
  if (unscaled_.empty())
    fail("GradScaler::update: no gradients were unscaled (step() or unscale_()) since the last update()");
  if (found_inf()) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= options_.growth_interval) {
    const double grown = scale_ * options_.growth_factor;
    if (std::isfinite(grown)) scale_ = grown;  // as PyTorch: never grow into inf
    growth_tracker_ = 0;
  }
  unscaled_.clear();
}

nlohmann::json GradScaler::state_dict() const {
  if (!enabled_) return nlohmann::json::object();
  return {{"scale", scale_},
          {"growth_factor", options_.growth_factor},
          {"backoff_factor", options_.backoff_factor},
          {"growth_interval", options_.growth_interval},
          {"_growth_tracker", growth_tracker_}};
}

void GradScaler::load_state_dict(const nlohmann::json& state) {
  if (!enabled_) return;
  if (!state.is_object() || state.empty())
    fail("GradScaler::load_state_dict: the state is empty (saved by a disabled scaler?)");
  try {
    GradScalerOptions o = options_;
    o.init_scale = state.at("scale").get<double>();
    o.growth_factor = state.at("growth_factor").get<double>();
    o.backoff_factor = state.at("backoff_factor").get<double>();
    o.growth_interval = state.at("growth_interval").get<int64_t>();
    const int64_t tracker = state.at("_growth_tracker").get<int64_t>();
    check_options(o, "GradScaler::load_state_dict");
    if (tracker < 0) fail("GradScaler::load_state_dict: _growth_tracker must be >= 0, got {}", tracker);
    options_ = o;
    scale_ = o.init_scale;
    growth_tracker_ = tracker;
    unscaled_.clear();
  } catch (const nlohmann::json::exception& e) {
    fail("GradScaler::load_state_dict: malformed state ({})", e.what());
  }
}

}  // namespace dl::optim
