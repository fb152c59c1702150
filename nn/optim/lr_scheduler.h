#pragma once
// Learning-rate schedules, as torch.optim.lr_scheduler (1.13). Each sets the lr of every group
// of its optimizer. Like PyTorch they use the recursive ("chainable") forms, which read the
// group's current lr, so two schedules on one optimizer compose, and a user's change to the lr
// carries forward.
//
// OneCycleLR is the exception: a closed form of the step count, stepped once per batch.
//
// Protocol (PyTorch's): constructing a scheduler records each group's initial_lr and takes the
// first step (epoch 0); then call optimizer.step() ... scheduler.step() once per epoch (or
// iteration). The scheduler keeps a reference to the optimizer, which must outlive it. A step
// that throws (OneCycleLR past its end) leaves the scheduler and the lrs as they were.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/optim/optimizer.h"

namespace dl::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  virtual std::string name() const = 0;
  virtual void step();
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  int64_t last_epoch() const { return last_epoch_; }

  // Everything but the optimizer: counters, base lrs, last lrs and the hyper-parameters
  // (load_state_dict restores those too, as PyTorch's __dict__.update does). It does not touch
  // the optimizer's lr: that comes back with the optimizer's own state_dict.
  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 protected:
  explicit LRScheduler(Optimizer& optimizer);
  // Derived constructors call this last (it calls the virtual get_lr()).
  void initial_step();
  virtual std::vector<double> get_lr() const = 0;  // the chainable form
  // PyTorch's _get_closed_form_lr: the lrs at last_epoch_ from base_lrs_ alone, where the
  // schedule has one (nullopt: step_to falls back to get_lr, as PyTorch does).
  virtual std::optional<std::vector<double>> get_closed_form_lr() const { return std::nullopt; }
  virtual void params_to_json(nlohmann::json& j) const = 0;
  virtual void params_from_json(const nlohmann::json& j) = 0;
  // PyTorch's deprecated step(epoch): jumps to `epoch`, by the closed form where there is one.
  // Only SequentialLR uses it (step(0) on the next schedule at a milestone).
  void step_to(int64_t epoch);
  friend class SequentialLR;

  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;

 private:
  void advance(int64_t epoch, bool closed_form);
};

// lr *= gamma every step_size epochs.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  std::string name() const override { return "StepLR"; }

 protected:
  std::vector<double> get_lr() const override;
  std::optional<std::vector<double>> get_closed_form_lr() const override;
  void params_to_json(nlohmann::json& j) const override;
  void params_from_json(const nlohmann::json& j) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr *= gamma^k at each milestone epoch (k = how often it is listed).
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, const std::vector<int64_t>& milestones, double gamma = 0.1);
  std::string name() const override { return "MultiStepLR"; }

 protected:
  std::vector<double> get_lr() const override;
  std::optional<std::vector<double>> get_closed_form_lr() const override;
  void params_to_json(nlohmann::json& j) const override;
  void params_from_json(const nlohmann::json& j) override;

 private:
  std::map<int64_t, int> milestones_;
  double gamma_;
};

// Cosine from the base lr down to eta_min over T_max epochs (then back up, periodically), in
// PyTorch's recursive form.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);
  std::string name() const override { return "CosineAnnealingLR"; }

 protected:
  std::vector<double> get_lr() const override;
  std::optional<std::vector<double>> get_closed_form_lr() const override;
  void params_to_json(nlohmann::json& j) const override;
  void params_from_json(const nlohmann::json& j) override;

 private:
  int64_t T_max_;
  double eta_min_;
};

// PyTorch's LinearLR: the factor goes linearly from start_factor to end_factor over total_iters
// epochs, then stays (a linear warm-up when start_factor < end_factor = 1).
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5);
  std::string name() const override { return "LinearLR"; }

 protected:
  std::vector<double> get_lr() const override;
  std::optional<std::vector<double>> get_closed_form_lr() const override;
  void params_to_json(nlohmann::json& j) const override;
  void params_from_json(const nlohmann::json& j) override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};
using LinearWarmup = LinearLR;

// PyTorch's OneCycleLR (the 1cycle policy) with anneal_strategy='cos' and cycle_momentum=False:
// it sets only the lr; momentum (or Adam's beta1) is NOT cycled. Step it once per batch, after
// optimizer.step(). Each group's lr goes from initial_lr = max_lr / div_factor up to max_lr over
// the first pct_start of total_steps, then down to min_lr = initial_lr / final_div_factor; with
// three_phase, back down to initial_lr symmetrically, then to min_lr. max_lrs: one per group, or
// one for all. Not chainable (a closed form of the step count); it overwrites each group's
// initial_lr, as PyTorch does. step() may be called total_steps times after construction; one
// more throws dl::Error (PyTorch's ValueError).
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, std::vector<double> max_lrs, int64_t total_steps, double pct_start = 0.3,
             double div_factor = 25, double final_div_factor = 1e4, bool three_phase = false);
  std::string name() const override { return "OneCycleLR"; }
  int64_t total_steps() const { return total_steps_; }

 protected:
  std::vector<double> get_lr() const override;
  void params_to_json(nlohmann::json& j) const override;
  void params_from_json(const nlohmann::json& j) override;

 private:
  std::vector<double> max_lrs_, min_lrs_;  // per group; the initial lrs are base_lrs_
  int64_t total_steps_;
  double pct_start_, div_factor_, final_div_factor_;
  bool three_phase_;
};

// PyTorch's SequentialLR: runs `schedulers` one after the other, switching at each milestone
// (one fewer milestone than schedulers, strictly increasing, positive). It owns them; they must
// all be built on `optimizer` (construct them in order, as in PyTorch: construction resets the
// lr to initial_lr and restarts the first). At a milestone it calls the next scheduler's
// step(0), PyTorch's quirk: that one restarts from epoch 0 by its closed form (its base lr).
// A linear warm-up then cosine decay over `total` steps, as in PyTorch:
//   SequentialLR(opt, {LinearLR(opt, s, 1, w), CosineAnnealingLR(opt, total - w, eta_min)}, {w}).
// Its state_dict holds each scheduler's. A SequentialLR cannot be one of the schedulers.
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::unique_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  std::string name() const override { return "SequentialLR"; }
  void step() override;
  const std::vector<std::unique_ptr<LRScheduler>>& schedulers() const { return schedulers_; }
  const std::vector<int64_t>& milestones() const { return milestones_; }

 protected:
  std::vector<double> get_lr() const override;  // never called: step() delegates
  void params_to_json(nlohmann::json& j) const override;
  void params_from_json(const nlohmann::json& j) override;

 private:
  std::vector<std::unique_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

// ---- ReduceLROnPlateau -------------------------------------------------------------------------------
enum class PlateauMode { Min, Max };
enum class ThresholdMode { Rel, Abs };

struct ReduceLROnPlateauOptions {
  PlateauMode mode = PlateauMode::Min;
  double factor = 0.1;      // new lr = max(lr * factor, min_lr)
  int64_t patience = 10;    // bad epochs tolerated before a reduction
  double threshold = 1e-4;  // what counts as better (relative or absolute)
  ThresholdMode threshold_mode = ThresholdMode::Rel;
  int64_t cooldown = 0;     // epochs after a reduction during which bad epochs are not counted
  std::vector<double> min_lr = {0.0};  // one value for all groups, or one per group
  double eps = 1e-8;        // reductions smaller than this are skipped
};

// Reduces the lr when a metric has stopped improving: step(metric) once per epoch.
class ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(Optimizer& optimizer, const ReduceLROnPlateauOptions& options = {});
  void step(double metric);
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }

  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 private:
  bool is_better(double a, double best) const;
  void validate() const;

  Optimizer& optimizer_;
  ReduceLROnPlateauOptions opt_;
  std::vector<double> min_lrs_;
  double best_;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
  int64_t last_epoch_ = 0;
  std::vector<double> last_lr_;
};

}  // namespace dl::optim
