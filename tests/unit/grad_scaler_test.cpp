// optim::GradScaler on the CPU in float32: scaling the loss scales the gradients; unscale_ restores
// them exactly; a non-finite gradient (injected) skips the step and backs the scale off; growth
// after growth_interval clean steps; the call-order errors; state_dict round trip; disabled = plain.
#include <cmath>
#include <limits>

#include "nn/optim/grad_scaler.h"
#include "nn/optim/sgd.h"
#include "tensor/ops.h"
#include "test_util.h"

using namespace dl;
using namespace dl::optim;
using dl::test::check_throws_with;

namespace {

struct Fixture {
  Tensor w = from_vector<float>({0.5f, -1.0f, 2.0f}, {3}).requires_grad_();
  Tensor b = from_vector<float>({0.25f}, {1}).requires_grad_();
  SGD opt{{w, b}, {.lr = 0.5}};
  // loss = sum(w * x) + 3 b: dloss/dw = x, dloss/db = 3
  Tensor loss() const { return (w * from_vector<float>({1.f, 2.f, -4.f}, {3})).sum() + b.sum() * 3.0; }
};

std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }

}  // namespace

TEST_CASE("GradScaler scales the loss, unscales the gradients exactly and steps") {
  Fixture f;
  GradScaler scaler({.init_scale = 1024.0, .growth_interval = 3});
  CHECK(scaler.get_scale() == 1024.0);
  f.opt.zero_grad();
  Tensor scaled = scaler.scale(f.loss());
  CHECK(scaled.item<float>() == doctest::Approx(f.loss().item<float>() * 1024.0));
  scaled.backward();
  CHECK(values(f.w.grad()) == std::vector<float>{1024.f, 2048.f, -4096.f});
  scaler.unscale_(f.opt);
  CHECK(values(f.w.grad()) == std::vector<float>{1.f, 2.f, -4.f});  // powers of two: exact
  CHECK(values(f.b.grad()) == std::vector<float>{3.f});
  CHECK_FALSE(scaler.found_inf());
  CHECK(scaler.step(f.opt));  // already unscaled: not divided twice
  CHECK(values(f.w) == std::vector<float>{0.0f, -2.0f, 4.0f});
  CHECK(values(f.b) == std::vector<float>{-1.25f});
  scaler.update();
  CHECK(scaler.get_scale() == 1024.0);
  CHECK(scaler.growth_tracker() == 1);
}

TEST_CASE("GradScaler skips the step and backs off when a gradient is inf or NaN") {
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    CAPTURE(bad);
    Fixture f;
    GradScaler scaler({.init_scale = 65536.0});
    f.opt.zero_grad();
    scaler.scale(f.loss()).backward();
    Tensor g = f.b.grad();
    g.fill_(bad);  // an overflowed gradient in one parameter of two
    const auto w_before = values(f.w), b_before = values(f.b);
    CHECK_FALSE(scaler.step(f.opt));
    CHECK(scaler.found_inf());
    CHECK(values(f.w) == w_before);  // nothing moved
    CHECK(values(f.b) == b_before);
    scaler.update();
    CHECK(scaler.get_scale() == 32768.0);
    CHECK(scaler.growth_tracker() == 0);
    // the next clean step runs
    f.opt.zero_grad();
    scaler.scale(f.loss()).backward();
    CHECK(scaler.step(f.opt));
    scaler.update();
    CHECK(scaler.get_scale() == 32768.0);
    CHECK(scaler.growth_tracker() == 1);
  }
}

TEST_CASE("GradScaler grows the scale after growth_interval clean steps in a row") {
  Fixture f;
  GradScaler scaler({.init_scale = 8.0, .growth_factor = 2.0, .backoff_factor = 0.5, .growth_interval = 3});
  const std::vector<bool> overflow = {false, false, true, false, false, false, false, false, false, true};
  const std::vector<double> expect = {8, 8, 4, 4, 4, 8, 8, 8, 16, 8};
  int skipped = 0;
  for (size_t i = 0; i < overflow.size(); ++i) {
    CAPTURE(i);
    f.opt.zero_grad();
    scaler.scale(f.loss()).backward();
    if (overflow[i]) f.w.grad().fill_(std::numeric_limits<float>::infinity());
    if (!scaler.step(f.opt)) ++skipped;
    scaler.update();
    CHECK(scaler.get_scale() == expect[i]);
  }
  CHECK(skipped == 2);
}

TEST_CASE("GradScaler refuses calls out of order and bad options") {
  Fixture f;
  GradScaler scaler;
  check_throws_with([&] { scaler.update(); }, {"no gradients were unscaled"});
  f.opt.zero_grad();
  scaler.scale(f.loss()).backward();
  scaler.unscale_(f.opt);
  check_throws_with([&] { scaler.unscale_(f.opt); }, {"already called", "SGD"});
  scaler.update();
  check_throws_with([] { GradScaler s({.init_scale = 0.0}); }, {"scale must be positive"});
  check_throws_with([] { GradScaler s({.growth_factor = 1.0}); }, {"growth_factor"});
  check_throws_with([] { GradScaler s({.backoff_factor = 1.0}); }, {"backoff_factor"});
  check_throws_with([] { GradScaler s({.growth_interval = 0}); }, {"growth_interval"});
}

TEST_CASE("GradScaler state_dict round trip continues exactly") {
  Fixture f;
  GradScaler a({.init_scale = 256.0, .growth_interval = 4});
  for (int i = 0; i < 3; ++i) {
    f.opt.zero_grad();
    a.scale(f.loss()).backward();
    if (i == 0) f.w.grad().fill_(NAN);
    a.step(f.opt);
    a.update();
  }
  const nlohmann::json s = a.state_dict();
  CHECK(s.at("scale").get<double>() == 128.0);
  CHECK(s.at("_growth_tracker").get<int64_t>() == 2);
  GradScaler b;
  b.load_state_dict(nlohmann::json::parse(s.dump()));
  CHECK(b.get_scale() == 128.0);
  CHECK(b.growth_tracker() == 2);
  CHECK(b.options().growth_interval == 4);
  for (GradScaler* sc : {&a, &b}) {  // two more clean steps: both grow at the same one
    for (int i = 0; i < 2; ++i) {
      f.opt.zero_grad();
      sc->scale(f.loss()).backward();
      sc->step(f.opt);
      sc->update();
    }
  }
  CHECK(a.get_scale() == 256.0);
  CHECK(b.get_scale() == 256.0);
  nlohmann::json bad = s;
  bad["scale"] = -1.0;
  check_throws_with([&] { b.load_state_dict(bad); }, {"scale must be positive"});
  check_throws_with([&] { b.load_state_dict(nlohmann::json::object()); }, {"empty"});
}

TEST_CASE("a disabled GradScaler passes everything through") {
  Fixture f;
  GradScaler scaler({.enabled = false});
  CHECK(scaler.get_scale() == 1.0);
  f.opt.zero_grad();
  Tensor l = f.loss();
  Tensor s = scaler.scale(l);
  CHECK(s.item<float>() == l.item<float>());
  s.backward();
  CHECK(scaler.step(f.opt));
  scaler.update();  // no error without unscale_
  CHECK(values(f.w) == std::vector<float>{0.0f, -2.0f, 4.0f});
  CHECK(scaler.state_dict().empty());
}
