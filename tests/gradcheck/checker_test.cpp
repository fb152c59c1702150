// The gradient checker itself: it must catch a wrong backward and say where.
#include "autograd/node.h"
#include "test_util.h"

using namespace dl;
using V = std::vector<Tensor>;

namespace {
// exp with a deliberately wrong backward (2x too large for every element past the first)
Tensor bad_exp(const Tensor& x) {
  Tensor out = x.detach().exp();
  Tensor y = autograd::save(out);
  return autograd::record("BadExpBackward", out, {x}, [y](const Tensor& g, const autograd::NeedsGrad&) {
    NoGradGuard ng;
    return std::vector<Tensor>{g * y * 2.0};
  });
}
}  // namespace

TEST_CASE("gradcheck catches a wrong backward and names the element") {
  auto x = from_vector<double>({0.1, 0.2, 0.3}, {3}).requires_grad_();
  auto res = gradcheck([](const V& v) { return bad_exp(v[0]); }, V{x});
  CHECK_FALSE(res.ok);
  CHECK(res.message.find("analytic") != std::string::npos);
  CHECK(res.message.find("numeric") != std::string::npos);
  CHECK(res.worst_error > 0.1);
}

TEST_CASE("gradcheck passes a correct op and leaves the caller's tensors alone") {
  auto x = from_vector<double>({0.1, 0.2, 0.3}, {3}).requires_grad_();
  auto res = gradcheck([](const V& v) { return v[0].exp(); }, V{x});
  CHECK(res.ok);
  CHECK_FALSE(x.grad().defined());
  CHECK(res.checked == 3);
}

TEST_CASE("gradcheck refuses float32 inputs and skips kinks") {
  auto f = from_vector<float>({1}, {1}).requires_grad_();
  CHECK_THROWS_AS(gradcheck([](const V& v) { return v[0]; }, V{f}), dl::Error);
  // relu exactly at 0 is a kink: skipped, the other points checked
  auto x = from_vector<double>({0.0, 0.5, -0.5, 1.0}, {4}).requires_grad_();
  auto res = gradcheck([](const V& v) { return v[0].relu(); }, V{x});
  CHECK(res.ok);
  CHECK(res.skipped == 1);
}

TEST_CASE("gradcheck samples large inputs") {
  auto x = rand({50, 50}, DType::Float64).requires_grad_();
  auto res = gradcheck([](const V& v) { return v[0].tanh(); }, V{x}, GradcheckOptions{1e-6, 1e-6, 40});
  CHECK(res.ok);
  CHECK(res.checked == 40);
}
