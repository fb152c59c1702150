#pragma once
// Dynamic loss scaling for float16 mixed precision, shaped like torch.amp.GradScaler:
//
//     optim::GradScaler scaler;                      // init_scale 65536
//     for (...) {
//       optimizer.zero_grad();
//       Tensor loss;  { auto s = dl::autocast(cuda, DType::Float16); loss = loss_fn(model(x), y); }
//       scaler.scale(loss).backward();               // gradients are scaled by scale()
//       scaler.unscale_(optimizer);                  // optional: before clipping gradients
//       scaler.step(optimizer);                      // unscales if not yet; skipped on inf/NaN
//       scaler.update();                             // backoff on overflow, growth after clean steps
//     }
//
// float16 has 5 exponent bits: gradients below ~6e-8 flush to zero. Multiplying the loss by a large
// scale lifts them into range; the optimizer then sees them divided back. A step whose gradients
// overflowed (inf or NaN anywhere) is skipped and the scale halves; after growth_interval clean
// steps in a row it doubles. Scales stay powers of two (with the default factors), so scaling and
// unscaling are exact. Works on any device and dtype (the checks are tensor ops; one host sync per
// unscale_). A disabled scaler passes everything through, so one loop serves fp32/bf16/fp16.
#include <cstdint>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "nn/optim/optimizer.h"

namespace dl::optim {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  // loss * scale (differentiable; the loss itself when disabled).
  Tensor scale(const Tensor& loss) const;
  // Divides every gradient of `optimizer`'s parameters by the scale, in place, and records whether
  // any of them holds inf or NaN. At most once per optimizer between update()s (a dl::Error otherwise).
  void unscale_(Optimizer& optimizer);
  // unscale_ (unless already done), then optimizer.step() unless a gradient was not finite. Returns
  // whether the step ran. Disabled: optimizer.step(), true.
  bool step(Optimizer& optimizer);
  // Adjusts the scale from this iteration's checks (every optimizer unscaled since the last update):
  // backoff when any found inf/NaN, growth after growth_interval clean updates. Then forgets them.
  // A dl::Error when nothing was unscaled since the last update (as PyTorch).
  void update();

  double get_scale() const { return enabled_ ? scale_ : 1.0; }
  bool is_enabled() const { return enabled_; }
  int64_t growth_tracker() const { return growth_tracker_; }  // clean updates in a row
  const GradScalerOptions& options() const { return options_; }
  // Whether this iteration's unscale_ calls so far found inf/NaN (false before any).
  bool found_inf() const;

  // {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}: PyTorch's
  // keys. Empty object when disabled. load_state_dict checks the values (positive scale, factors).
  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 private:
  GradScalerOptions options_;
  bool enabled_;
  double scale_;
  int64_t growth_tracker_ = 0;
  // per optimizer unscaled since the last update: whether its gradients held inf/NaN
  std::unordered_map<const Optimizer*, bool> unscaled_;
};

}  // namespace dl::optim
