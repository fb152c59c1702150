// LR schedulers without PyTorch: OneCycleLR past its last step (the error, and that it changes
// nothing), and the arguments OneCycleLR and SequentialLR reject. Their values against PyTorch
// are in tests/reference/lr_schedule_reference.cpp.
#include <memory>

#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"
#include "test_util.h"

using namespace dl;
using namespace dl::optim;
using dl::test::check_throws_with;

namespace {
struct Setup {
  Tensor a = zeros({3}).requires_grad_();
  Tensor b = zeros({2}).requires_grad_();
  std::unique_ptr<SGD> opt = std::make_unique<SGD>(std::vector<ParamGroupSpec>{{{a}, {}}, {{b}, {.lr = 0.05}}},
                                                   SGDOptions{.lr = 0.1, .momentum = 0.9});
  std::vector<double> lrs() const { return {opt->param_groups()[0].lr, opt->param_groups()[1].lr}; }
};
}  // namespace

TEST_CASE("OneCycleLR: stepping past total_steps throws, naming the step count, and changes nothing") {
  Setup s;
  OneCycleLR sched(*s.opt, {0.5, 0.2}, 5);
  CHECK(s.opt->param_groups()[0].initial_lr == 0.5 / 25);  // PyTorch overwrites initial_lr
  // step 0 starts at initial_lr (up to rounding: PyTorch's cosine formula, end + (start - end) / 2 * 2)
  CHECK(s.lrs()[0] == doctest::Approx(0.5 / 25).epsilon(1e-14));
  CHECK(s.lrs()[1] == doctest::Approx(0.2 / 25).epsilon(1e-14));
  for (int k = 1; k <= 5; ++k) sched.step();  // total_steps calls after construction are allowed
  CHECK(sched.last_epoch() == 5);
  const auto last = s.lrs();
  const auto state = sched.state_dict().dump();
  // PyTorch's count includes the constructor's step: "Tried to step 7 times ... total steps is 5"
  check_throws_with([&] { sched.step(); }, {"OneCycleLR", "tried to step 7 times", "total steps is 5",
                                            "at most 5 times after construction"});
  CHECK(sched.last_epoch() == 5);
  CHECK(s.lrs() == last);
  CHECK(sched.get_last_lr() == last);
  CHECK(sched.state_dict().dump() == state);
  check_throws_with([&] { sched.step(); }, {"tried to step 7 times"});  // and again, the same
}

TEST_CASE("OneCycleLR: a state resumed at its last step still refuses one more") {
  Setup s;
  OneCycleLR sched(*s.opt, {0.3}, 4, 0.5, 10.0, 100.0, true);
  for (int k = 1; k <= 4; ++k) sched.step();
  Setup s2;
  OneCycleLR resumed(*s2.opt, {0.1}, 50);  // other settings: load_state_dict restores them
  resumed.load_state_dict(nlohmann::json::parse(sched.state_dict().dump()));
  CHECK(resumed.total_steps() == 4);
  check_throws_with([&] { resumed.step(); }, {"tried to step 6 times", "total steps is 4"});
}

TEST_CASE("OneCycleLR rejects invalid settings with the value named") {
  Setup s;
  check_throws_with([&] { OneCycleLR(*s.opt, {0.1}, 0); }, {"total_steps must be positive, got 0"});
  check_throws_with([&] { OneCycleLR(*s.opt, {0.1, 0.2, 0.3}, 10); }, {"expected 1 or 2 max_lr values", "got 3"});
  check_throws_with([&] { OneCycleLR(*s.opt, {0.1}, 10, 1.5); }, {"pct_start must be in [0, 1], got 1.5"});
  check_throws_with([&] { OneCycleLR(*s.opt, {0.1}, 10, 0.3, 0.0); }, {"div_factor must be finite and > 0, got 0"});
  check_throws_with([&] { OneCycleLR(*s.opt, {-0.1}, 10); }, {"max_lr must be finite and >= 0, got -0.1"});
  // pct_start * total_steps = 1: PyTorch divides by zero at the first step; here a dl::Error, not a NaN
  check_throws_with([&] { OneCycleLR(*s.opt, {0.1}, 10, 0.1); }, {"phase 1 of the schedule is empty at step 0"});
  OneCycleLR ok(*s.opt, {0.1}, 10);
  check_throws_with([&] { ok.load_state_dict(StepLR(*s.opt, 3).state_dict()); }, {"not from a OneCycleLR"});
}

TEST_CASE("SequentialLR rejects mismatched schedulers and milestones") {
  Setup s, other;
  auto two = [&](Optimizer& second) {
    std::vector<std::unique_ptr<LRScheduler>> v;
    v.push_back(std::make_unique<LinearLR>(*s.opt, 0.1, 1.0, int64_t{5}));
    v.push_back(std::make_unique<CosineAnnealingLR>(second, int64_t{20}));
    return v;
  };
  check_throws_with([&] { SequentialLR(*s.opt, two(*s.opt), {5, 10}); },
                    {"one milestone fewer than schedulers", "2 schedulers and 2 milestones"});
  check_throws_with([&] { SequentialLR(*s.opt, two(*s.opt), {0}); }, {"milestones must be positive", "got 0"});
  check_throws_with([&] { SequentialLR(*s.opt, two(*other.opt), {5}); }, {"scheduler 1 (CosineAnnealingLR) belongs to another optimizer"});
  check_throws_with([&] { SequentialLR(*s.opt, {}, {}); }, {"at least one scheduler"});
  auto inner = std::make_unique<SequentialLR>(*s.opt, two(*s.opt), std::vector<int64_t>{5});
  std::vector<std::unique_ptr<LRScheduler>> nested;
  nested.push_back(std::move(inner));
  check_throws_with([&] { SequentialLR(*s.opt, std::move(nested), {}); }, {"cannot be nested"});
}

TEST_CASE("SequentialLR.load_state_dict is all or nothing") {
  Setup s;
  std::vector<std::unique_ptr<LRScheduler>> v;
  v.push_back(std::make_unique<LinearLR>(*s.opt, 0.1, 1.0, int64_t{5}));
  v.push_back(std::make_unique<CosineAnnealingLR>(*s.opt, int64_t{20}));
  SequentialLR seq(*s.opt, std::move(v), {5});
  for (int k = 0; k < 7; ++k) seq.step();
  auto before = seq.state_dict();
  auto bad = before;
  bad["schedulers"][1]["scheduler"] = "StepLR";  // the second one's state is rejected...
  bad["schedulers"][0]["last_epoch"] = 2;
  check_throws_with([&] { seq.load_state_dict(bad); }, {"not from a CosineAnnealingLR"});
  CHECK(seq.state_dict() == before);  // ...and the first one's is not kept
}
