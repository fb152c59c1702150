#include "nn/optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

namespace dl::optim {

using nlohmann::json;

namespace {
std::vector<double> group_lrs(const Optimizer& o) {
  std::vector<double> v;
  for (const auto& g : o.param_groups()) v.push_back(g.lr);
  return v;
}

const json& require(const json& j, const char* key, const std::string& who) {
  if (!j.is_object() || !j.contains(key)) fail("{}.load_state_dict: the state has no '{}'", who, key);
  return j[key];
}
double get_number(const json& j, const char* key, const std::string& who) {
  const json& v = require(j, key, who);
  // JSON has no infinity: those are saved as the strings "inf" / "-inf"
  if (v.is_string() && (v == "inf" || v == "-inf")) return v == "inf" ? INFINITY : -INFINITY;
  if (!v.is_number()) fail("{}.load_state_dict: '{}' must be a number", who, key);
  return v.get<double>();
}
int64_t get_int(const json& j, const char* key, const std::string& who) {
  const json& v = require(j, key, who);
  if (!v.is_number_integer()) fail("{}.load_state_dict: '{}' must be an integer", who, key);
  return v.get<int64_t>();
}
std::vector<double> get_numbers(const json& j, const char* key, const std::string& who, size_t n) {
  const json& v = require(j, key, who);
  if (!v.is_array() || v.size() != n) fail("{}.load_state_dict: '{}' must list {} numbers (one per param group)", who, key, n);
  std::vector<double> out;
  for (const auto& x : v) {
    if (!x.is_number()) fail("{}.load_state_dict: '{}' must list numbers", who, key);
    out.push_back(x.get<double>());
  }
  return out;
}
json number_json(double v) { return std::isinf(v) ? json(v > 0 ? "inf" : "-inf") : json(v); }
}  // namespace

// ---- base -------------------------------------------------------------------------------------------

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (auto& g : optimizer_.param_groups()) {
    if (!g.initial_lr) g.initial_lr = g.lr;
    base_lrs_.push_back(*g.initial_lr);
  }
}

void LRScheduler::initial_step() {
  step_count_ = 0;
  step();
}

void LRScheduler::step() { advance(last_epoch_ + 1, false); }

void LRScheduler::step_to(int64_t epoch) { advance(epoch, true); }

void LRScheduler::advance(int64_t epoch, bool closed_form) {
  auto& groups = optimizer_.param_groups();
  if (groups.size() != base_lrs_.size())
    fail("{}.step: the optimizer has {} param groups, the scheduler was made for {}", name(), groups.size(), base_lrs_.size());
  const int64_t previous = last_epoch_;
  last_epoch_ = epoch;  // get_lr reads it
  std::vector<double> lrs;
  try {
    std::optional<std::vector<double>> closed;
    if (closed_form) closed = get_closed_form_lr();
    lrs = closed ? std::move(*closed) : get_lr();
  } catch (...) {
    last_epoch_ = previous;  // a failed step changes nothing
    throw;
  }
  ++step_count_;
  for (size_t i = 0; i < groups.size(); ++i) groups[i].lr = lrs[i];
  last_lr_ = group_lrs(optimizer_);
}

json LRScheduler::state_dict() const {
  json j;
  j["scheduler"] = name();
  j["last_epoch"] = last_epoch_;
  j["step_count"] = step_count_;
  j["base_lrs"] = base_lrs_;
  j["last_lr"] = last_lr_;
  params_to_json(j);
  return j;
}

void LRScheduler::load_state_dict(const json& j) {
  const std::string who = name();
  if (!j.is_object() || !j.contains("scheduler") || j["scheduler"] != who)
    fail("{}.load_state_dict: the state is not from a {} (scheduler = {})", who, who,
         j.is_object() && j.contains("scheduler") ? j["scheduler"].dump() : "missing");
  size_t n = optimizer_.param_groups().size();
  auto base = get_numbers(j, "base_lrs", who, n);
  auto last = get_numbers(j, "last_lr", who, n);
  int64_t epoch = get_int(j, "last_epoch", who), count = get_int(j, "step_count", who);
  params_from_json(j);  // validates before anything below changes
  base_lrs_ = base;
  last_lr_ = last;
  last_epoch_ = epoch;
  step_count_ = count;
}

// ---- StepLR -----------------------------------------------------------------------------------------

StepLR::StepLR(Optimizer& o, int64_t step_size, double gamma) : LRScheduler(o), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) fail("StepLR: step_size must be positive, got {}", step_size);
  if (!std::isfinite(gamma) || gamma < 0) fail("StepLR: gamma must be finite and >= 0, got {}", gamma);
  initial_step();
}

std::vector<double> StepLR::get_lr() const {
  std::vector<double> lrs = group_lrs(optimizer_);
  if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lrs;
  for (auto& lr : lrs) lr = lr * gamma_;
  return lrs;
}

std::optional<std::vector<double>> StepLR::get_closed_form_lr() const {
  // Python's floor division
  int64_t k = last_epoch_ / step_size_;
  if (last_epoch_ % step_size_ != 0 && last_epoch_ < 0) --k;
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(base * std::pow(gamma_, static_cast<double>(k)));
  return lrs;
}

void StepLR::params_to_json(json& j) const {
  j["step_size"] = step_size_;
  j["gamma"] = gamma_;
}

void StepLR::params_from_json(const json& j) {
  int64_t s = get_int(j, "step_size", name());
  double g = get_number(j, "gamma", name());
  if (s <= 0) fail("StepLR.load_state_dict: step_size must be positive, got {}", s);
  step_size_ = s;
  gamma_ = g;
}

// ---- MultiStepLR ------------------------------------------------------------------------------------

MultiStepLR::MultiStepLR(Optimizer& o, const std::vector<int64_t>& milestones, double gamma) : LRScheduler(o), gamma_(gamma) {
  if (!std::isfinite(gamma) || gamma < 0) fail("MultiStepLR: gamma must be finite and >= 0, got {}", gamma);
  for (int64_t m : milestones) ++milestones_[m];
  initial_step();
}

std::vector<double> MultiStepLR::get_lr() const {
  std::vector<double> lrs = group_lrs(optimizer_);
  auto it = milestones_.find(last_epoch_);
  if (it == milestones_.end()) return lrs;
  for (auto& lr : lrs) lr = lr * std::pow(gamma_, it->second);
  return lrs;
}

std::optional<std::vector<double>> MultiStepLR::get_closed_form_lr() const {
  int64_t passed = 0;  // bisect_right over the listed milestones: how many are <= last_epoch
  for (const auto& [m, count] : milestones_)
    if (m <= last_epoch_) passed += count;
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(base * std::pow(gamma_, static_cast<double>(passed)));
  return lrs;
}

void MultiStepLR::params_to_json(json& j) const {
  json ms = json::array();
  for (const auto& [m, count] : milestones_)
    for (int k = 0; k < count; ++k) ms.push_back(m);
  j["milestones"] = ms;
  j["gamma"] = gamma_;
}

void MultiStepLR::params_from_json(const json& j) {
  const json& ms = require(j, "milestones", name());
  if (!ms.is_array()) fail("MultiStepLR.load_state_dict: 'milestones' must be a list of integers");
  std::map<int64_t, int> m;
  for (const auto& x : ms) {
    if (!x.is_number_integer()) fail("MultiStepLR.load_state_dict: 'milestones' must be a list of integers");
    ++m[x.get<int64_t>()];
  }
  double g = get_number(j, "gamma", name());
  milestones_ = std::move(m);
  gamma_ = g;
}

// ---- CosineAnnealingLR ------------------------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& o, int64_t T_max, double eta_min) : LRScheduler(o), T_max_(T_max), eta_min_(eta_min) {
  if (T_max <= 0) fail("CosineAnnealingLR: T_max must be positive, got {}", T_max);
  if (!std::isfinite(eta_min) || eta_min < 0) fail("CosineAnnealingLR: eta_min must be finite and >= 0, got {}", eta_min);
  initial_step();
}

std::vector<double> CosineAnnealingLR::get_lr() const {
  constexpr double pi = std::numbers::pi;
  std::vector<double> lrs = group_lrs(optimizer_);
  const double e = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  if (last_epoch_ == 0) return lrs;
  // Python's expressions, term for term, so the doubles agree with PyTorch's.
  if ((last_epoch_ - 1 - T_max_) % (2 * T_max_) == 0) {
    for (size_t i = 0; i < lrs.size(); ++i) lrs[i] = lrs[i] + (base_lrs_[i] - eta_min_) * (1 - std::cos(pi / T)) / 2;
    return lrs;
  }
  for (auto& lr : lrs)
    lr = (1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T)) * (lr - eta_min_) + eta_min_;
  return lrs;
}

std::optional<std::vector<double>> CosineAnnealingLR::get_closed_form_lr() const {
  constexpr double pi = std::numbers::pi;
  const double e = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(eta_min_ + (base - eta_min_) * (1 + std::cos(pi * e / T)) / 2);
  return lrs;
}

void CosineAnnealingLR::params_to_json(json& j) const {
  j["T_max"] = T_max_;
  j["eta_min"] = eta_min_;
}

void CosineAnnealingLR::params_from_json(const json& j) {
  int64_t t = get_int(j, "T_max", name());
  double e = get_number(j, "eta_min", name());
  if (t <= 0) fail("CosineAnnealingLR.load_state_dict: T_max must be positive, got {}", t);
  T_max_ = t;
  eta_min_ = e;
}

// ---- LinearLR ---------------------------------------------------------------------------------------

LinearLR::LinearLR(Optimizer& o, double start, double end, int64_t total)
    : LRScheduler(o), start_factor_(start), end_factor_(end), total_iters_(total) {
  // start_factor 0 would divide by zero at the second step (PyTorch 1.13 accepts it, then fails)
  if (!(start > 0 && start <= 1)) fail("LinearLR: start_factor must be in (0, 1], got {}", start);
  if (!(end >= 0 && end <= 1)) fail("LinearLR: end_factor must be in [0, 1], got {}", end);
  if (total <= 0) fail("LinearLR: total_iters must be positive, got {}", total);
  initial_step();
}

std::vector<double> LinearLR::get_lr() const {
  std::vector<double> lrs = group_lrs(optimizer_);
  if (last_epoch_ == 0) {
    for (auto& lr : lrs) lr = lr * start_factor_;
    return lrs;
  }
  if (last_epoch_ > total_iters_) return lrs;
  const double d = end_factor_ - start_factor_;
  for (auto& lr : lrs)
    lr = lr * (1. + d / (static_cast<double>(total_iters_) * start_factor_ + static_cast<double>(last_epoch_ - 1) * d));
  return lrs;
}

std::optional<std::vector<double>> LinearLR::get_closed_form_lr() const {
  const double done = static_cast<double>(std::min(total_iters_, last_epoch_));
  std::vector<double> lrs;
  for (double base : base_lrs_)
    lrs.push_back(base * (start_factor_ + (end_factor_ - start_factor_) * done / static_cast<double>(total_iters_)));
  return lrs;
}

void LinearLR::params_to_json(json& j) const {
  j["start_factor"] = start_factor_;
  j["end_factor"] = end_factor_;
  j["total_iters"] = total_iters_;
}

void LinearLR::params_from_json(const json& j) {
  double s = get_number(j, "start_factor", name()), e = get_number(j, "end_factor", name());
  int64_t t = get_int(j, "total_iters", name());
  if (!(s > 0 && s <= 1) || !(e >= 0 && e <= 1) || t <= 0)
    fail("LinearLR.load_state_dict: invalid start_factor {}, end_factor {} or total_iters {}", s, e, t);
  start_factor_ = s;
  end_factor_ = e;
  total_iters_ = t;
}

// ---- OneCycleLR -------------------------------------------------------------------------------------

namespace {
void check_one_cycle(const std::string& who, int64_t total_steps, double pct_start, double div_factor,
                     double final_div_factor) {
  if (total_steps <= 0) fail("{}: total_steps must be positive, got {}", who, total_steps);
  if (!(pct_start >= 0 && pct_start <= 1)) fail("{}: pct_start must be in [0, 1], got {}", who, pct_start);
  if (!(div_factor > 0) || !std::isfinite(div_factor)) fail("{}: div_factor must be finite and > 0, got {}", who, div_factor);
  if (!(final_div_factor > 0) || !std::isfinite(final_div_factor))
    fail("{}: final_div_factor must be finite and > 0, got {}", who, final_div_factor);
}
}  // namespace

OneCycleLR::OneCycleLR(Optimizer& o, std::vector<double> max_lrs, int64_t total_steps, double pct_start, double div_factor,
                       double final_div_factor, bool three_phase)
    : LRScheduler(o),
      total_steps_(total_steps),
      pct_start_(pct_start),
      div_factor_(div_factor),
      final_div_factor_(final_div_factor),
      three_phase_(three_phase) {
  check_one_cycle("OneCycleLR", total_steps, pct_start, div_factor, final_div_factor);
  auto& groups = optimizer_.param_groups();
  if (max_lrs.size() == 1)
    max_lrs.assign(groups.size(), max_lrs[0]);
  else if (max_lrs.size() != groups.size())
    fail("OneCycleLR: expected 1 or {} max_lr values (one per param group), got {}", groups.size(), max_lrs.size());
  for (double m : max_lrs)
    if (!(m >= 0) || !std::isfinite(m)) fail("OneCycleLR: max_lr must be finite and >= 0, got {}", m);
  max_lrs_ = std::move(max_lrs);
  for (size_t i = 0; i < groups.size(); ++i) {
    // PyTorch sets group['initial_lr'], whatever an earlier scheduler put there
    base_lrs_[i] = max_lrs_[i] / div_factor_;
    groups[i].initial_lr = base_lrs_[i];
    min_lrs_.push_back(base_lrs_[i] / final_div_factor_);
  }
  initial_step();
}

std::vector<double> OneCycleLR::get_lr() const {
  constexpr double pi = std::numbers::pi;
  const int64_t step_num = last_epoch_;
  if (step_num > total_steps_)
    fail("OneCycleLR.step: tried to step {} times (counting the step the constructor takes); the specified number of "
         "total steps is {}, so step() may be called at most {} times after construction",
         step_num + 1, total_steps_, total_steps_);
  // PyTorch's _schedule_phases: where each phase ends (a step, as a double) and its two ends
  struct Phase {
    double end_step;
    const std::vector<double>& start_lr;
    const std::vector<double>& end_lr;
  };
  const double T = static_cast<double>(total_steps_);
  const std::vector<Phase> phases =
      three_phase_ ? std::vector<Phase>{{pct_start_ * T - 1, base_lrs_, max_lrs_},
                                        {2 * pct_start_ * T - 2, max_lrs_, base_lrs_},
                                        {T - 1, base_lrs_, min_lrs_}}
                   : std::vector<Phase>{{pct_start_ * T - 1, base_lrs_, max_lrs_}, {T - 1, max_lrs_, min_lrs_}};
  const double step = static_cast<double>(step_num);
  std::vector<double> lrs;
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    double start_step = 0;
    for (size_t i = 0; i < phases.size(); ++i) {
      const double end_step = phases[i].end_step;
      if (step <= end_step || i == phases.size() - 1) {
        if (end_step == start_step)  // PyTorch: ZeroDivisionError
          fail("OneCycleLR: phase {} of the schedule is empty at step {} (pct_start {} with total_steps {}), so the lr "
               "is undefined there",
               i + 1, step_num, pct_start_, total_steps_);
        const double pct = (step - start_step) / (end_step - start_step);
        // _annealing_cos, term for term
        const double start = phases[i].start_lr[g], end = phases[i].end_lr[g];
        const double cos_out = std::cos(pi * pct) + 1;
        lrs.push_back(end + (start - end) / 2.0 * cos_out);
        break;
      }
      start_step = end_step;
    }
  }
  return lrs;
}

void OneCycleLR::params_to_json(json& j) const {
  j["max_lrs"] = max_lrs_;
  j["min_lrs"] = min_lrs_;
  j["total_steps"] = total_steps_;
  j["pct_start"] = pct_start_;
  j["div_factor"] = div_factor_;
  j["final_div_factor"] = final_div_factor_;
  j["three_phase"] = three_phase_;
  j["anneal_strategy"] = "cos";
  j["cycle_momentum"] = false;
}

void OneCycleLR::params_from_json(const json& j) {
  const std::string who = name();
  size_t n = optimizer_.param_groups().size();
  auto max_lrs = get_numbers(j, "max_lrs", who, n), min_lrs = get_numbers(j, "min_lrs", who, n);
  int64_t total = get_int(j, "total_steps", who);
  double pct = get_number(j, "pct_start", who), div = get_number(j, "div_factor", who),
         final_div = get_number(j, "final_div_factor", who);
  const json& three = require(j, "three_phase", who);
  if (!three.is_boolean()) fail("{}.load_state_dict: 'three_phase' must be true or false", who);
  if (j.contains("anneal_strategy") && j["anneal_strategy"] != "cos")
    fail("{}.load_state_dict: anneal_strategy {} is not supported (only \"cos\")", who, j["anneal_strategy"].dump());
  if (j.contains("cycle_momentum") && j["cycle_momentum"] != false)
    fail("{}.load_state_dict: cycle_momentum is not supported", who);
  check_one_cycle(who + ".load_state_dict", total, pct, div, final_div);
  max_lrs_ = std::move(max_lrs);
  min_lrs_ = std::move(min_lrs);
  total_steps_ = total;
  pct_start_ = pct;
  div_factor_ = div;
  final_div_factor_ = final_div;
  three_phase_ = three.get<bool>();
}

// ---- SequentialLR -----------------------------------------------------------------------------------

namespace {
void check_milestones(const std::string& who, const std::vector<int64_t>& milestones, size_t schedulers) {
  if (milestones.size() + 1 != schedulers)
    fail("{}: expected one milestone fewer than schedulers, got {} schedulers and {} milestones", who, schedulers,
         milestones.size());
  for (size_t i = 0; i < milestones.size(); ++i)
    if (milestones[i] <= 0 || (i > 0 && milestones[i] <= milestones[i - 1]))
      fail("{}: milestones must be positive and strictly increasing, got {} at position {}", who, milestones[i], i);
}
}  // namespace

SequentialLR::SequentialLR(Optimizer& o, std::vector<std::unique_ptr<LRScheduler>> schedulers, std::vector<int64_t> milestones)
    : LRScheduler(o), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  if (schedulers_.empty()) fail("SequentialLR: expected at least one scheduler");
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    if (!schedulers_[i]) fail("SequentialLR: scheduler {} is null", i);
    if (&schedulers_[i]->optimizer_ != &optimizer_)
      fail("SequentialLR: scheduler {} ({}) belongs to another optimizer; all must belong to the one passed in", i,
           schedulers_[i]->name());
    if (dynamic_cast<const SequentialLR*>(schedulers_[i].get()))
      fail("SequentialLR: scheduler {} is itself a SequentialLR, which cannot be nested", i);
  }
  check_milestones("SequentialLR", milestones_, schedulers_.size());
  auto& groups = optimizer_.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    DL_CHECK(groups[i].initial_lr, "SequentialLR: param group {} has no initial_lr", i);
    groups[i].lr = *groups[i].initial_lr;  // undo what constructing the schedulers did
  }
  for (auto& s : schedulers_) s->last_epoch_ -= 1;
  schedulers_[0]->initial_step();  // only the first one restarts
  last_epoch_ = 0;
  step_count_ = 1;
  last_lr_ = schedulers_[0]->last_lr_;
}

void SequentialLR::step() {
  const int64_t epoch = last_epoch_ + 1;
  const size_t idx = static_cast<size_t>(std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin());
  LRScheduler& s = *schedulers_[idx];
  if (idx > 0 && milestones_[idx - 1] == epoch)
    s.step_to(0);  // PyTorch's scheduler.step(0): the next schedule restarts from its base lrs
  else
    s.step();
  last_epoch_ = epoch;
  ++step_count_;
  last_lr_ = s.last_lr_;
}

std::vector<double> SequentialLR::get_lr() const {
  fail("SequentialLR.get_lr: not defined; step() delegates to the scheduler in force");
}

void SequentialLR::params_to_json(json& j) const {
  j["milestones"] = milestones_;
  json states = json::array();
  for (const auto& s : schedulers_) states.push_back(s->state_dict());
  j["schedulers"] = states;
}

void SequentialLR::params_from_json(const json& j) {
  const std::string who = name();
  const json& ms = require(j, "milestones", who);
  if (!ms.is_array()) fail("{}.load_state_dict: 'milestones' must be a list of integers", who);
  std::vector<int64_t> milestones;
  for (const auto& x : ms) {
    if (!x.is_number_integer()) fail("{}.load_state_dict: 'milestones' must be a list of integers", who);
    milestones.push_back(x.get<int64_t>());
  }
  check_milestones(who + ".load_state_dict", milestones, schedulers_.size());
  const json& states = require(j, "schedulers", who);
  if (!states.is_array() || states.size() != schedulers_.size())
    fail("{}.load_state_dict: 'schedulers' must list {} states (one per scheduler)", who, schedulers_.size());
  // all or nothing: if one scheduler rejects its state, the ones already loaded go back
  std::vector<json> previous;
  for (const auto& s : schedulers_) previous.push_back(s->state_dict());
  try {
    for (size_t i = 0; i < schedulers_.size(); ++i) schedulers_[i]->load_state_dict(states[i]);
  } catch (...) {
    for (size_t i = 0; i < schedulers_.size(); ++i) schedulers_[i]->load_state_dict(previous[i]);
    throw;
  }
  milestones_ = std::move(milestones);
}

// ---- ReduceLROnPlateau ----------------------------------------------------------------------------

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& o, const ReduceLROnPlateauOptions& opt) : optimizer_(o), opt_(opt) {
  validate();
  size_t n = o.param_groups().size();
  if (opt_.min_lr.size() == 1)
    min_lrs_.assign(n, opt_.min_lr[0]);
  else if (opt_.min_lr.size() == n)
    min_lrs_ = opt_.min_lr;
  else
    fail("ReduceLROnPlateau: expected 1 or {} min_lr values (one per param group), got {}", n, opt_.min_lr.size());
  for (double m : min_lrs_)
    if (!(m >= 0) || !std::isfinite(m)) fail("ReduceLROnPlateau: min_lr must be finite and >= 0, got {}", m);
  best_ = opt_.mode == PlateauMode::Min ? INFINITY : -INFINITY;
  last_lr_ = group_lrs(o);
}

void ReduceLROnPlateau::validate() const {
  if (!(opt_.factor >= 0 && opt_.factor < 1)) fail("ReduceLROnPlateau: factor should be in [0, 1), got {}", opt_.factor);
  if (opt_.patience < 0) fail("ReduceLROnPlateau: patience must be >= 0, got {}", opt_.patience);
  if (opt_.cooldown < 0) fail("ReduceLROnPlateau: cooldown must be >= 0, got {}", opt_.cooldown);
  if (!(opt_.threshold >= 0) || !std::isfinite(opt_.threshold))
    fail("ReduceLROnPlateau: threshold must be finite and >= 0, got {}", opt_.threshold);
  if (!(opt_.eps >= 0)) fail("ReduceLROnPlateau: eps must be >= 0, got {}", opt_.eps);
}

bool ReduceLROnPlateau::is_better(double a, double best) const {
  if (opt_.mode == PlateauMode::Min)
    return opt_.threshold_mode == ThresholdMode::Rel ? a < best * (1. - opt_.threshold) : a < best - opt_.threshold;
  return opt_.threshold_mode == ThresholdMode::Rel ? a > best * (opt_.threshold + 1.) : a > best + opt_.threshold;
}

void ReduceLROnPlateau::step(double metric) {
  if (std::isnan(metric)) fail("ReduceLROnPlateau.step: the metric is NaN");
  auto& groups = optimizer_.param_groups();
  if (groups.size() != min_lrs_.size())
    fail("ReduceLROnPlateau.step: the optimizer has {} param groups, the scheduler was made for {}", groups.size(),
         min_lrs_.size());
  last_epoch_ += 1;
  if (is_better(metric, best_)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    num_bad_epochs_ += 1;
  }
  if (cooldown_counter_ > 0) {
    cooldown_counter_ -= 1;
    num_bad_epochs_ = 0;  // bad epochs in cooldown do not count
  }
  if (num_bad_epochs_ > opt_.patience) {
    for (size_t i = 0; i < groups.size(); ++i) {
      double old_lr = groups[i].lr;
      double new_lr = std::max(old_lr * opt_.factor, min_lrs_[i]);
      if (old_lr - new_lr > opt_.eps) groups[i].lr = new_lr;
    }
    cooldown_counter_ = opt_.cooldown;
    num_bad_epochs_ = 0;
  }
  last_lr_ = group_lrs(optimizer_);
}

json ReduceLROnPlateau::state_dict() const {
  json j;
  j["scheduler"] = "ReduceLROnPlateau";
  j["mode"] = opt_.mode == PlateauMode::Min ? "min" : "max";
  j["factor"] = opt_.factor;
  j["patience"] = opt_.patience;
  j["threshold"] = opt_.threshold;
  j["threshold_mode"] = opt_.threshold_mode == ThresholdMode::Rel ? "rel" : "abs";
  j["cooldown"] = opt_.cooldown;
  j["min_lrs"] = min_lrs_;
  j["eps"] = opt_.eps;
  j["best"] = number_json(best_);
  j["num_bad_epochs"] = num_bad_epochs_;
  j["cooldown_counter"] = cooldown_counter_;
  j["last_epoch"] = last_epoch_;
  j["last_lr"] = last_lr_;
  return j;
}

void ReduceLROnPlateau::load_state_dict(const json& j) {
  const std::string who = "ReduceLROnPlateau";
  if (!j.is_object() || !j.contains("scheduler") || j["scheduler"] != who)
    fail("{}.load_state_dict: the state is not from a {}", who, who);
  ReduceLROnPlateauOptions o;
  const json& mode = require(j, "mode", who);
  const json& tmode = require(j, "threshold_mode", who);
  if (mode != "min" && mode != "max") fail("{}.load_state_dict: mode {} is unknown (expected min or max)", who, mode.dump());
  if (tmode != "rel" && tmode != "abs")
    fail("{}.load_state_dict: threshold mode {} is unknown (expected rel or abs)", who, tmode.dump());
  o.mode = mode == "min" ? PlateauMode::Min : PlateauMode::Max;
  o.threshold_mode = tmode == "rel" ? ThresholdMode::Rel : ThresholdMode::Abs;
  o.factor = get_number(j, "factor", who);
  o.patience = get_int(j, "patience", who);
  o.threshold = get_number(j, "threshold", who);
  o.cooldown = get_int(j, "cooldown", who);
  o.eps = get_number(j, "eps", who);
  size_t n = optimizer_.param_groups().size();
  o.min_lr = get_numbers(j, "min_lrs", who, n);
  std::vector<double> last = get_numbers(j, "last_lr", who, n);
  double best = get_number(j, "best", who);
  int64_t bad = get_int(j, "num_bad_epochs", who), cool = get_int(j, "cooldown_counter", who), epoch = get_int(j, "last_epoch", who);
  std::swap(opt_, o);
  try {
    validate();
  } catch (...) {
    std::swap(opt_, o);
    throw;
  }
  min_lrs_ = opt_.min_lr;
  best_ = best;
  num_bad_epochs_ = bad;
  cooldown_counter_ = cool;
  last_epoch_ = epoch;
  last_lr_ = last;
}

}  // namespace dl::optim
