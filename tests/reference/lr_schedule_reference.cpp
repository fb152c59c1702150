// Learning-rate schedules against PyTorch 1.13 over 100 steps (fixtures written by
// tests/fixtures/make_lr_schedules.py): SGD with two param groups (lr 0.1 and 0.05), or three
// (a third with lr 0.02) for OneCycleLR and SequentialLR.
#include <functional>
#include <memory>

#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"
#include "test_util.h"

using namespace dl;
using namespace dl::optim;

namespace {
constexpr int kSteps = 100;
// The schedules are the same double arithmetic as PyTorch's Python, term for term: only libm's
// last bit could differ.
constexpr double kRtol = 1e-12, kAtol = 1e-15;

struct Setup {
  Tensor a = zeros({3}).requires_grad_();
  Tensor b = zeros({2}).requires_grad_();
  Tensor c = zeros({4}).requires_grad_();
  std::unique_ptr<SGD> opt;
  explicit Setup(int groups = 2) {
    std::vector<ParamGroupSpec> specs{{{a}, {}}, {{b}, {.lr = 0.05}}, {{c}, {.lr = 0.02}}};
    specs.resize(static_cast<size_t>(groups));
    opt = std::make_unique<SGD>(specs, SGDOptions{.lr = 0.1, .momentum = 0.9});
  }
  std::vector<double> lrs() const {
    std::vector<double> v;
    for (const auto& g : opt->param_groups()) v.push_back(g.lr);
    return v;
  }
};

using Makers = std::vector<std::function<std::unique_ptr<LRScheduler>(Optimizer&)>>;

// Runs the schedulers for 100 steps (optimizer.step() then scheduler.step(), PyTorch's order).
// With resume_at > 0, it saves optimizer and scheduler state after that many steps and continues
// in a fresh optimizer and fresh schedulers loaded from that state.
Tensor run(const Makers& makers, int groups, int resume_at = 0) {
  auto s = std::make_unique<Setup>(groups);
  std::vector<std::unique_ptr<LRScheduler>> scheds;
  for (const auto& m : makers) scheds.push_back(m(*s->opt));
  std::vector<double> rows = s->lrs();
  for (int k = 1; k <= kSteps; ++k) {
    s->opt->step();
    for (auto& sc : scheds) sc->step();
    auto r = s->lrs();
    rows.insert(rows.end(), r.begin(), r.end());
    CHECK(scheds.back()->get_last_lr() == r);  // the earlier ones saw the lr before the later ones' step
    for (auto& sc : scheds) CHECK(sc->last_epoch() == k);
    if (k == resume_at) {
      auto opt_state = s->opt->state_dict();
      opt_state.meta = nlohmann::json::parse(opt_state.meta.dump());  // as a checkpoint file would
      std::vector<nlohmann::json> sched_states;
      for (auto& sc : scheds) sched_states.push_back(nlohmann::json::parse(sc->state_dict().dump()));
      scheds.clear();
      s = std::make_unique<Setup>(groups);
      for (const auto& m : makers) scheds.push_back(m(*s->opt));  // constructing steps once...
      s->opt->load_state_dict(opt_state);                           // ...and loading undoes it
      for (size_t i = 0; i < scheds.size(); ++i) scheds[i]->load_state_dict(sched_states[i]);
      CHECK(s->lrs() == r);
    }
  }
  return from_vector<double>(rows, {kSteps + 1, groups});
}

// Uninterrupted, then resumed from a state_dict after each of resume_steps.
void compare(const std::string& name, const Makers& makers, int groups = 2, const std::vector<int>& resume_steps = {37}) {
  Tensor expected = test::fixture("lr_schedules", name + ".lr");
  REQUIRE(expected.size(1) == groups);
  {
    INFO(name, ": uninterrupted");
    Tensor got = run(makers, groups);
    CHECK_CLOSE(got, expected, kRtol, kAtol);
    MESSAGE(name, ": largest relative difference vs PyTorch ", max_difference(got, expected).rel_diff);
  }
  for (int k : resume_steps) {
    INFO(name, ": resumed from a state_dict after ", k, " steps");
    CHECK_CLOSE(run(makers, groups, k), expected, kRtol, kAtol);
  }
}

template <typename S, typename... Args>
std::function<std::unique_ptr<LRScheduler>(Optimizer&)> make(Args... args) {
  return [=](Optimizer& o) { return std::make_unique<S>(o, args...); };
}
}  // namespace

TEST_CASE("reference: StepLR") { compare("step", {make<StepLR>(int64_t{7}, 0.5)}); }

TEST_CASE("reference: MultiStepLR with a repeated milestone") {
  compare("multistep", {make<MultiStepLR>(std::vector<int64_t>{10, 25, 25, 60}, 0.3)});
}

TEST_CASE("reference: CosineAnnealingLR (recursive form, past T_max)") {
  compare("cosine", {make<CosineAnnealingLR>(int64_t{30}, 0.001)});
}

TEST_CASE("reference: LinearLR as warm-up and as decay") {
  compare("linear_warmup", {make<LinearWarmup>(0.1, 1.0, int64_t{20})});
  compare("linear_decay", {make<LinearLR>(1.0, 0.2, int64_t{30})});
}

TEST_CASE("reference: LinearLR chained with CosineAnnealingLR") {
  compare("warmup_cosine", {make<LinearLR>(0.25, 1.0, int64_t{10}), make<CosineAnnealingLR>(int64_t{100}, 0.0)});
}

TEST_CASE("reference: OneCycleLR, two phases, one max_lr per group, to the end of the schedule") {
  // total_steps = 100 = the steps taken: the last step is the last one allowed
  compare("onecycle_per_group", {make<OneCycleLR>(std::vector<double>{0.5, 0.2, 0.05}, int64_t{100})}, 3,
          {1, 29, 30, 37, 99});
}

TEST_CASE("reference: OneCycleLR, one max_lr for all groups, other factors, stopped short of the end") {
  compare("onecycle_one_max_lr", {make<OneCycleLR>(std::vector<double>{0.3}, int64_t{130}, 0.25, 10.0, 100.0)}, 3);
}

TEST_CASE("reference: OneCycleLR, three phases") {
  compare("onecycle_three_phase",
          {make<OneCycleLR>(std::vector<double>{0.4, 0.1, 0.08}, int64_t{100}, 0.35, 25.0, 1e4, true)}, 3, {34, 37, 69, 70});
  compare("onecycle_three_phase_uneven",
          {make<OneCycleLR>(std::vector<double>{0.4, 0.1, 0.08}, int64_t{111}, 0.3, 5.0, 1e3, true)}, 3, {37, 65});
}

TEST_CASE("reference: OneCycleLR with pct_start 0 (no warm-up phase)") {
  compare("onecycle_no_warmup", {make<OneCycleLR>(std::vector<double>{0.2, 0.1, 0.3}, int64_t{100}, 0.0)}, 3);
}

namespace {
// A maker of a SequentialLR over the schedulers the makers build, in order (PyTorch's order too).
std::function<std::unique_ptr<LRScheduler>(Optimizer&)> sequential(Makers makers, std::vector<int64_t> milestones) {
  return [=](Optimizer& o) {
    std::vector<std::unique_ptr<LRScheduler>> scheds;
    for (const auto& m : makers) scheds.push_back(m(o));
    return std::make_unique<SequentialLR>(o, std::move(scheds), milestones);
  };
}
}  // namespace

TEST_CASE("reference: SequentialLR, linear warm-up then cosine (PyTorch's warm-up + cosine)") {
  // SequentialLR([LinearLR(start_factor=0.1, total_iters=10), CosineAnnealingLR(T_max=90, eta_min=1e-4)], [10])
  compare("sequential_warmup_cosine",
          {sequential({make<LinearLR>(0.1, 1.0, int64_t{10}), make<CosineAnnealingLR>(int64_t{90}, 1e-4)}, {10})}, 3,
          {9, 10, 11, 37});
  compare("sequential_short_warmup_cosine_past_tmax",
          {sequential({make<LinearLR>(0.5, 1.0, int64_t{3}), make<CosineAnnealingLR>(int64_t{60}, 0.002)}, {3})}, 3,
          {2, 3, 37, 64});
}

TEST_CASE("reference: SequentialLR of StepLR, MultiStepLR and LinearLR (closed forms at the milestones)") {
  compare("sequential_three",
          {sequential({make<StepLR>(int64_t{4}, 0.5), make<MultiStepLR>(std::vector<int64_t>{5, 12, 12}, 0.3),
                       make<LinearLR>(0.5, 0.1, int64_t{30})},
                      {20, 45})},
          3, {20, 37, 45, 46});
}

TEST_CASE("reference: SequentialLR of CosineAnnealingLR then OneCycleLR") {
  compare("sequential_cosine_then_onecycle",
          {sequential({make<CosineAnnealingLR>(int64_t{40}, 0.001),
                       make<OneCycleLR>(std::vector<double>{0.3, 0.2, 0.1}, int64_t{70}, 0.3, 25.0, 1e4, true)},
                      {30})},
          3, {30, 37});
}

namespace {
void compare_plateau(const std::string& name, const ReduceLROnPlateauOptions& options) {
  Tensor expected = test::fixture("lr_schedules", name + ".lr");
  auto metrics = test::fixture("lr_schedules", name + ".metric").to_vector<double>();
  REQUIRE(metrics.size() == static_cast<size_t>(kSteps));
  for (int resume_at : {0, 23}) {
    INFO(name, resume_at ? ": resumed from a state_dict after 23 steps" : ": uninterrupted");
    auto s = std::make_unique<Setup>();
    auto sched = std::make_unique<ReduceLROnPlateau>(*s->opt, options);
    std::vector<double> rows = s->lrs();
    int reductions = 0;
    for (int k = 1; k <= kSteps; ++k) {
      double before = s->opt->param_groups()[0].lr;
      s->opt->step();
      sched->step(metrics[static_cast<size_t>(k - 1)]);
      auto r = s->lrs();
      reductions += r[0] < before;
      rows.insert(rows.end(), r.begin(), r.end());
      CHECK(sched->get_last_lr() == r);
      if (k == resume_at) {
        // through JSON text, as a checkpoint would (best may be +-inf, saved as a string)
        auto opt_state = s->opt->state_dict();
        opt_state.meta = nlohmann::json::parse(opt_state.meta.dump());
        auto sched_state = nlohmann::json::parse(sched->state_dict().dump());
        sched.reset();
        s = std::make_unique<Setup>();
        sched = std::make_unique<ReduceLROnPlateau>(*s->opt);  // default options: loading restores them
        s->opt->load_state_dict(opt_state);
        sched->load_state_dict(sched_state);
        CHECK(s->lrs() == r);
      }
    }
    CHECK(reductions >= 3);  // the sequence does trigger reductions
    Tensor got = from_vector<double>(rows, {kSteps + 1, 2});
    CHECK_CLOSE(got, expected, kRtol, kAtol);
  }
}
}  // namespace

TEST_CASE("reference: ReduceLROnPlateau, min mode, relative threshold, cooldown, per-group min_lr") {
  compare_plateau("plateau_min_rel", {.mode = PlateauMode::Min, .factor = 0.5, .patience = 3, .threshold = 0.01,
                                      .threshold_mode = ThresholdMode::Rel, .cooldown = 2, .min_lr = {0.01, 0.002}});
}

TEST_CASE("reference: ReduceLROnPlateau, max mode, absolute threshold") {
  compare_plateau("plateau_max_abs", {.mode = PlateauMode::Max, .factor = 0.3, .patience = 5, .threshold = 0.001,
                                      .threshold_mode = ThresholdMode::Abs, .cooldown = 0, .min_lr = {0.001}});
}

TEST_CASE("LR schedulers reject invalid settings with the value named") {
  Setup s;
  auto throws_with = [](auto&& fn, const std::string& text) {
    try {
      fn();
      FAIL("no error; expected one mentioning '" << text << "'");
    } catch (const dl::Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(text) != std::string::npos);
    }
  };
  throws_with([&] { StepLR(*s.opt, 0); }, "step_size must be positive, got 0");
  throws_with([&] { CosineAnnealingLR(*s.opt, -3); }, "T_max must be positive, got -3");
  throws_with([&] { LinearLR(*s.opt, 0.0); }, "start_factor must be in (0, 1], got 0");
  throws_with([&] { LinearLR(*s.opt, 0.5, 1.5); }, "end_factor must be in [0, 1], got 1.5");
  throws_with([&] { ReduceLROnPlateau(*s.opt, {.factor = 1.0}); }, "factor should be in [0, 1), got 1");
  throws_with([&] { ReduceLROnPlateau(*s.opt, {.min_lr = {0.1, 0.2, 0.3}}); }, "expected 1 or 2 min_lr values");
  ReduceLROnPlateau p(*s.opt);
  throws_with([&] { p.step(std::nan("")); }, "metric is NaN");
  StepLR st(*s.opt, 3);
  throws_with([&] { st.load_state_dict(CosineAnnealingLR(*s.opt, 5).state_dict()); }, "not from a StepLR");
}
