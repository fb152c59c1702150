// Optimizers on plain tensors: the update formulas (against a hand-written double-precision
// version of torch.optim's), param groups, zero_grad, skipping parameters without a gradient,
// state_dict resume, the fused and op-by-op paths agreeing, and hyper-parameter validation.
#include <cmath>
#include <functional>
#include <memory>

#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "tensor/ops.h"
#include "test_util.h"

using namespace dl;
using namespace dl::optim;
using Vec = std::vector<double>;

namespace {

using dl::test::check_throws_with;

// A fixed sequence of gradients for a 5-element parameter.
Vec grad_at(int step) {
  Vec g(5);
  for (int i = 0; i < 5; ++i) g[i] = std::sin(1.3 * i + 0.7 * step) * (1 + 0.1 * i);
  return g;
}
const Vec kStart = {0.5, -1.0, 2.0, 0.0, -0.25};

// torch.optim.SGD._single_tensor_sgd in double.
Vec sgd_reference(int steps, double lr, double mom, double damp, double wd, bool nesterov) {
  Vec p = kStart, buf;
  for (int s = 0; s < steps; ++s) {
    Vec d = grad_at(s);
    for (int i = 0; i < 5; ++i) d[i] += wd * p[i];
    if (mom != 0) {
      if (buf.empty())
        buf = d;
      else
        for (int i = 0; i < 5; ++i) buf[i] = buf[i] * mom + (1 - damp) * d[i];
      for (int i = 0; i < 5; ++i) d[i] = nesterov ? d[i] + mom * buf[i] : buf[i];
    }
    for (int i = 0; i < 5; ++i) p[i] -= lr * d[i];
  }
  return p;
}

// torch.optim.Adam / AdamW._single_tensor_adam(w) in double.
Vec adam_reference(int steps, double lr, double b1, double b2, double eps, double wd, bool amsgrad, bool decoupled) {
  Vec p = kStart, m(5, 0.0), v(5, 0.0), vmax(5, 0.0);
  for (int s = 1; s <= steps; ++s) {
    Vec g = grad_at(s - 1);
    for (int i = 0; i < 5; ++i) {
      if (decoupled)
        p[i] *= 1 - lr * wd;
      else
        g[i] += wd * p[i];
      m[i] = m[i] * b1 + (1 - b1) * g[i];
      v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i];
      vmax[i] = std::max(vmax[i], v[i]);
      double second = amsgrad ? vmax[i] : v[i];
      double denom = std::sqrt(second) / std::sqrt(1 - std::pow(b2, s)) + eps;
      p[i] -= lr / (1 - std::pow(b1, s)) * m[i] / denom;
    }
  }
  return p;
}

using MakeOpt = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;

// Runs `steps` steps on a float64 parameter starting at kStart with the fixed gradients.
Tensor run_steps(const MakeOpt& make, int steps, DType dtype = DType::Float64) {
  Tensor p = from_vector<double>(kStart, {5}, dtype).requires_grad_();
  auto opt = make({p});
  for (int s = 0; s < steps; ++s) {
    p.set_grad(from_vector<double>(grad_at(s), {5}, dtype));
    opt->step();
  }
  return p.detach();
}

template <typename O, typename Options>
MakeOpt maker(Options o) {
  return [o](std::vector<Tensor> ps) { return std::make_unique<O>(std::move(ps), o); };
}

}  // namespace

TEST_CASE("SGD follows torch.optim.SGD: plain, momentum (first-step buffer), dampening, nesterov, weight decay") {
  struct Case {
    double lr, mom, damp, wd;
    bool nesterov;
  };
  for (Case c : {Case{0.1, 0, 0, 0, false}, Case{0.1, 0.9, 0, 0, false}, Case{0.05, 0.8, 0.3, 0.01, false},
                 Case{0.1, 0.9, 0, 0.05, true}}) {
    INFO("lr ", c.lr, " momentum ", c.mom, " dampening ", c.damp, " weight_decay ", c.wd, " nesterov ", c.nesterov);
    Tensor expected = from_vector<double>(sgd_reference(7, c.lr, c.mom, c.damp, c.wd, c.nesterov), {5});
    for (bool fused : {true, false}) {
      INFO("fused ", fused);
      SGDOptions o{.lr = c.lr, .momentum = c.mom, .dampening = c.damp, .weight_decay = c.wd, .nesterov = c.nesterov, .fused = fused};
      CHECK_CLOSE(run_steps(maker<SGD>(o), 7), expected, 1e-13, 1e-14);
    }
  }
  // the first momentum step uses the gradient itself (no dampening), as torch does
  SGDOptions damped{.lr = 1.0, .momentum = 0.5, .dampening = 0.5};
  Tensor one = run_steps(maker<SGD>(damped), 1);
  Tensor expected_one = from_vector<double>(kStart, {5}) - from_vector<double>(grad_at(0), {5});
  CHECK_CLOSE(one, expected_one, 1e-15, 1e-15);
}

TEST_CASE("Adam and AdamW follow torch.optim: bias correction, eps outside the sqrt, coupled vs decoupled decay, amsgrad") {
  for (bool amsgrad : {false, true}) {
    for (bool fused : {true, false}) {
      INFO("amsgrad ", amsgrad, " fused ", fused);
      Tensor adam = run_steps(maker<Adam>(AdamOptions{.lr = 0.01, .betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = 0.1, .amsgrad = amsgrad, .fused = fused}), 9);
      CHECK_CLOSE(adam, from_vector<double>(adam_reference(9, 0.01, 0.8, 0.95, 1e-6, 0.1, amsgrad, false), {5}), 1e-12, 1e-14);
      Tensor adamw = run_steps(maker<AdamW>(AdamWOptions{.lr = 0.01, .betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = 0.1, .amsgrad = amsgrad, .fused = fused}), 9);
      CHECK_CLOSE(adamw, from_vector<double>(adam_reference(9, 0.01, 0.8, 0.95, 1e-6, 0.1, amsgrad, true), {5}), 1e-12, 1e-14);
      CHECK(max_difference(adam, adamw).abs_diff > 1e-5);  // the two decays really differ
    }
  }
  // defaults: Adam lr 1e-3 no decay; AdamW weight_decay 1e-2
  Tensor p = zeros({1}).requires_grad_();
  AdamW w({p});
  CHECK(w.param_groups()[0].weight_decay == 1e-2);
  CHECK(w.param_groups()[0].betas == std::array<double, 2>{0.9, 0.999});
  Adam a({zeros({1}).requires_grad_()});
  CHECK(a.param_groups()[0].weight_decay == 0.0);
  CHECK(a.param_groups()[0].lr == 1e-3);
}

TEST_CASE("the fused CPU path and the op-by-op path agree in float32, on strided parameters too") {
  for (bool fused : {true, false}) {
    Tensor a = run_steps(maker<Adam>(AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true, .fused = fused}), 9, DType::Float32);
    Tensor expected = from_vector<double>(adam_reference(9, 0.01, 0.9, 0.999, 1e-8, 0.1, true, false), {5});
    CHECK_CLOSE(a, expected, 1e-5, 1e-6);
  }
  // a transposed (non-contiguous) parameter and gradient
  for (bool fused : {true, false}) {
    INFO("fused ", fused);
    Tensor base = arange(0.0, 12.0, 1.0, DType::Float64).reshape({3, 4});
    Tensor q = base.t().contiguous().detach().requires_grad_();  // the same values, contiguous
    Tensor p = base.t().detach().requires_grad_();                // (4, 3), strides (1, 4)
    REQUIRE_FALSE(p.is_contiguous());
    SGD opt({p}, {.lr = 0.5, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true, .fused = fused});
    Tensor g = (base * 0.1).t();
    p.set_grad(g);
    opt.step();
    opt.step();
    SGD ref({q}, {.lr = 0.5, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
    q.set_grad(g.contiguous());
    ref.step();
    ref.step();
    CHECK(max_difference(p, q).abs_diff == 0.0);
  }
}

TEST_CASE("the fused vector loops and the op-by-op path agree bit for bit on long float32 parameters, every variant") {
  // 1,003 values: the fused loops' vector bodies (not only their scalar remainders, which 5-value parameters
  // reach) for each weight-decay form, AMSGrad, momentum, dampening and Nesterov, over three steps (SGD's first
  // step copies the gradient into its buffer).
  const int64_t n = 1003;
  auto grad_for = [&](int step) {
    std::vector<float> g(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) g[static_cast<size_t>(i)] = static_cast<float>(std::sin(0.37 * i + 1.1 * step) * (1 + 0.01 * i));
    return from_vector(g, {n});
  };
  auto run = [&](auto make, bool fused) {
    std::vector<float> start(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) start[static_cast<size_t>(i)] = static_cast<float>(std::cos(0.11 * i) * 2);
    Tensor p = from_vector(start, {n}).requires_grad_();
    auto opt = make(p, fused);
    for (int s = 0; s < 3; ++s) {
      p.set_grad(grad_for(s));
      opt->step();
    }
    return p.to_vector<float>();
  };
  for (double wd : {0.0, 0.05})
    for (bool amsgrad : {false, true}) {
      INFO("weight decay " << wd << " amsgrad " << amsgrad);
      auto adam = [&](Tensor p, bool fused) {
        return std::make_unique<Adam>(std::vector<Tensor>{p}, AdamOptions{.lr = 0.01, .betas = {0.8, 0.95}, .eps = 1e-6,
                                                                         .weight_decay = wd, .amsgrad = amsgrad, .fused = fused});
      };
      auto adamw = [&](Tensor p, bool fused) {
        return std::make_unique<AdamW>(std::vector<Tensor>{p}, AdamWOptions{.lr = 0.01, .betas = {0.8, 0.95}, .eps = 1e-6,
                                                                           .weight_decay = wd, .amsgrad = amsgrad, .fused = fused});
      };
      CHECK(run(adam, true) == run(adam, false));
      CHECK(run(adamw, true) == run(adamw, false));
    }
  struct SgdCase {
    double mom, damp, wd;
    bool nesterov;
  };
  for (const SgdCase& c : {SgdCase{0, 0, 0, false}, SgdCase{0, 0, 0.1, false}, SgdCase{0.9, 0, 0, false},
                           SgdCase{0.9, 0.2, 0.1, false}, SgdCase{0.9, 0, 0.1, true}, SgdCase{0.8, 0, 0, true}}) {
    INFO("momentum " << c.mom << " dampening " << c.damp << " weight decay " << c.wd << " nesterov " << c.nesterov);
    auto sgd = [&](Tensor p, bool fused) {
      return std::make_unique<SGD>(std::vector<Tensor>{p}, SGDOptions{.lr = 0.3, .momentum = c.mom, .dampening = c.damp,
                                                                       .weight_decay = c.wd, .nesterov = c.nesterov, .fused = fused});
    };
    CHECK(run(sgd, true) == run(sgd, false));
  }
}

TEST_CASE("param groups keep their own lr and weight decay and defaults fill the rest") {
  Tensor a = ones({2}).requires_grad_(), b = ones({2}).requires_grad_(), c = ones({2}).requires_grad_();
  SGD opt(std::vector<ParamGroupSpec>{{{a}, {}}, {{b}, {.lr = 0.5, .weight_decay = 1.0}}},
          SGDOptions{.lr = 0.1, .momentum = 0.0, .weight_decay = 0.0});
  opt.add_param_group({c}, {.lr = 0.01});
  REQUIRE(opt.param_groups().size() == 3);
  CHECK(opt.param_groups()[1].lr == 0.5);
  CHECK(opt.param_groups()[2].weight_decay == 0.0);
  for (auto* t : {&a, &b, &c}) t->set_grad(full({2}, 2.0));
  opt.step();
  CHECK(a.to_vector<float>() == std::vector<float>(2, 1.0f - 0.1f * 2.0f));
  CHECK(b.to_vector<float>() == std::vector<float>(2, 1.0f - 0.5f * (2.0f + 1.0f)));
  CHECK(c.to_vector<float>() == std::vector<float>(2, 1.0f - 0.01f * 2.0f));
  // a scheduler-style lr change takes effect on the next step
  opt.param_groups()[0].lr = 0.0;
  opt.step();
  CHECK(a.to_vector<float>() == std::vector<float>(2, 0.8f));
}

TEST_CASE("zero_grad drops gradients and parameters without a gradient are skipped") {
  Tensor a = ones({3}).requires_grad_(), b = ones({3}).requires_grad_();
  Adam opt({a, b}, {.lr = 0.1});
  a.set_grad(ones({3}));
  opt.step();
  CHECK(b.to_vector<float>() == std::vector<float>(3, 1.0f));  // untouched
  CHECK(opt.state(b).empty());                                // and no state created
  CHECK(opt.state(a).at("step").item<double>() == 1.0);
  CHECK(a.to_vector<float>()[0] == doctest::Approx(0.9));     // Adam's first step moves by lr
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
  Tensor a_before = a.clone();
  opt.step();  // nothing has a gradient: nothing changes, step counts stay
  CHECK(max_difference(a, a_before).abs_diff == 0.0);
  CHECK(opt.state(a).at("step").item<double>() == 1.0);
  b.set_grad(ones({3}));
  opt.step();
  CHECK(opt.state(b).at("step").item<double>() == 1.0);
  CHECK(opt.state(a).at("step").item<double>() == 1.0);
}

namespace {
// Runs 6 steps, snapshots the optimizer through its state_dict (tensors cloned, JSON text),
// continues 5 more, then rebuilds the optimizer from the snapshot on a copy of the parameters and
// checks the 5 continued steps are bit-identical.
void check_resume(const std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>& make) {
  Tensor w = from_vector<double>(kStart, {5}, DType::Float32).requires_grad_();
  Tensor b = from_vector<double>({0.1, -0.2}, {2}, DType::Float32).requires_grad_();
  auto opt = make({w, b});
  auto set_grads = [](Tensor w_, Tensor b_, int s) {
    w_.set_grad(from_vector<double>(grad_at(s), {5}, DType::Float32));
    b_.set_grad(from_vector<double>({std::cos(0.3 * s), 0.5}, {2}, DType::Float32));
  };
  for (int s = 0; s < 6; ++s) {
    set_grads(w, b, s);
    opt->step();
  }
  OptimizerState saved = opt->state_dict();
  for (auto& [k, t] : saved.tensors) t = t.clone();
  saved.meta = nlohmann::json::parse(saved.meta.dump());
  Tensor w_saved = w.detach().clone(), b_saved = b.detach().clone();
  for (int s = 6; s < 11; ++s) {
    set_grads(w, b, s);
    opt->step();
  }
  Tensor w2 = w_saved.clone().requires_grad_(), b2 = b_saved.clone().requires_grad_();
  auto resumed = make({w2, b2});
  resumed->load_state_dict(saved);
  for (int s = 6; s < 11; ++s) {
    set_grads(w2, b2, s);
    resumed->step();
  }
  CHECK(max_difference(w, w2).abs_diff == 0.0);
  CHECK(max_difference(b, b2).abs_diff == 0.0);
  CHECK(resumed->state_dict().meta == opt->state_dict().meta);
}
}  // namespace

TEST_CASE("state_dict save and load continue a run exactly") {
  SUBCASE("SGD with nesterov momentum") {
    check_resume(maker<SGD>(SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}));
  }
  SUBCASE("Adam with amsgrad") { check_resume(maker<Adam>(AdamOptions{.lr = 0.01, .amsgrad = true})); }
  SUBCASE("AdamW") { check_resume(maker<AdamW>(AdamWOptions{.lr = 0.01, .weight_decay = 0.1})); }

  Tensor w = ones({2}).requires_grad_();
  Adam opt({w}, {.lr = 0.1});
  w.set_grad(ones({2}));
  opt.step();
  OptimizerState st = opt.state_dict();
  CHECK(st.meta["optimizer"] == "Adam");
  CHECK(st.meta["param_groups"][0]["params"] == nlohmann::json::array({0}));
  CHECK(st.meta["param_groups"][0]["betas"] == nlohmann::json::array({0.9, 0.999}));
  std::vector<std::string> names;
  for (auto& [k, t] : st.tensors) names.push_back(k);
  CHECK(names == std::vector<std::string>{"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"});

  // what a bad state says
  SGD sgd({ones({2}).requires_grad_()}, {.lr = 0.1});
  check_throws_with([&] { sgd.load_state_dict(st); }, {"saved by Adam, not SGD"});
  Adam two({ones({2}).requires_grad_(), ones({3}).requires_grad_()});
  check_throws_with([&] { two.load_state_dict(st); }, {"group 0 has 1 parameters in the state, 2 in the optimizer"});
  Adam other({ones({3}).requires_grad_()});
  check_throws_with([&] { other.load_state_dict(st); }, {"'state.0.exp_avg' has shape [2], its parameter has [3]"});
  OptimizerState bad = st;
  bad.tensors.emplace_back("state.0.momentum_buffer", zeros({2}));
  check_throws_with([&] { opt.load_state_dict(bad); }, {"Adam keeps no state named 'momentum_buffer'"});
  bad = st;
  bad.tensors.emplace_back("state.4.exp_avg", zeros({2}));
  check_throws_with([&] { opt.load_state_dict(bad); }, {"names parameter 4, but there are 1 parameters"});
  bad = st;
  bad.meta["param_groups"][0]["eps"] = -1.0;
  check_throws_with([&] { opt.load_state_dict(bad); }, {"invalid epsilon value -1"});
}

TEST_CASE("invalid hyper-parameters and parameters are refused with the value named") {
  auto p = [] { return ones({2}).requires_grad_(); };
  check_throws_with([&] { SGD({p()}, SGDOptions{}); }, {"SGD", "lr is required"});
  SGD per_group(std::vector<ParamGroupSpec>{{{p()}, {.lr = 0.3}}}, SGDOptions{});  // the group gives it
  CHECK(per_group.param_groups()[0].lr == 0.3);
  check_throws_with([&] { SGD({p()}, {.lr = -0.1}); }, {"invalid learning rate -0.1"});
  check_throws_with([&] { SGD({p()}, {.lr = 0.1, .momentum = -0.5}); }, {"invalid momentum value -0.5"});
  check_throws_with([&] { SGD({p()}, {.lr = 0.1, .weight_decay = -1e-4}); }, {"invalid weight_decay value -0.0001"});
  check_throws_with([&] { SGD({p()}, {.lr = 0.1, .nesterov = true}); }, {"Nesterov momentum requires a momentum and zero dampening", "momentum=0"});
  check_throws_with([&] { SGD({p()}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}); }, {"dampening=0.1"});
  check_throws_with([&] { Adam({p()}, {.lr = -1}); }, {"Adam: invalid learning rate -1"});
  check_throws_with([&] { Adam({p()}, {.betas = {0.9, 1.0}}); }, {"invalid beta parameter at index 1: 1"});
  check_throws_with([&] { Adam({p()}, {.betas = {-0.1, 0.9}}); }, {"invalid beta parameter at index 0: -0.1"});
  check_throws_with([&] { AdamW({p()}, {.eps = -1e-8}); }, {"AdamW: invalid epsilon value -1e-08"});
  check_throws_with([&] { AdamW({p()}, {.weight_decay = -0.01}); }, {"invalid weight_decay value -0.01"});

  check_throws_with([&] { SGD(std::vector<Tensor>{}, {.lr = 0.1}); }, {"empty parameter list"});
  Tensor leaf = p();
  check_throws_with([&] { SGD({leaf * 2.0}, {.lr = 0.1}); }, {"can't optimize a non-leaf tensor"});
  check_throws_with([&] { SGD({zeros({2}, DType::Int64)}, {.lr = 0.1}); }, {"int64", "only float32/float64"});
  SGD opt({leaf}, {.lr = 0.1});
  check_throws_with([&] { opt.add_param_group({leaf}); }, {"more than one parameter group"});
  check_throws_with([&] { opt.add_param_group({p()}, {.lr = -3.0}); }, {"invalid learning rate -3"});
  CHECK(opt.param_groups().size() == 1);  // the refused groups were not added

  // a bad value set between steps is caught before any parameter changes
  Tensor q = p();
  opt.add_param_group({q}, {.lr = 0.2});
  leaf.set_grad(ones({2}));
  q.set_grad(ones({2}));
  opt.param_groups()[1].lr = std::nan("");
  check_throws_with([&] { opt.step(); }, {"invalid learning rate nan"});
  CHECK(leaf.to_vector<float>() == std::vector<float>{1.0f, 1.0f});
  // a gradient of the wrong dtype
  opt.param_groups()[1].lr = 0.2;
  q.set_grad(ones({2}, DType::Float64));
  check_throws_with([&] { opt.step(); }, {"gradient is float64 [2]", "the parameter is float32 [2]"});
}

TEST_CASE("state that no longer matches a converted parameter is reported, not misused") {
  Tensor w = ones({3}).requires_grad_();
  Adam opt({w});
  w.set_grad(ones({3}));
  opt.step();
  // what Module::to(Float64) does to a parameter slot
  Tensor w64 = ops::to_dtype(w.detach(), DType::Float64);
  w.impl().storage = w64.storage();
  w.impl().dtype = DType::Float64;
  w.set_grad(ones({3}, DType::Float64));
  check_throws_with([&] { opt.step(); }, {"state 'exp_avg' is float32", "now float64", "create the optimizer after moving"});
}
