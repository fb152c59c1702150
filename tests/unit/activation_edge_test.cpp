// Edge cases of the activations that the op-case table's random float inputs do not reach:
// integer clamp with infinite or fractional bounds, gradients at NaN and at the kinks.
#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "test_util.h"

using namespace dl;

TEST_CASE("clamp on integer tensors: infinite bounds leave a side open, fractional ones round inward") {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor i = from_vector<int64_t>({-5, -1, 0, 2, 7}, {5});
  CHECK(i.clamp(0, inf).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 2, 7});
  CHECK(i.clamp(-inf, 1).to_vector<int64_t>() == std::vector<int64_t>{-5, -1, 0, 1, 1});
  CHECK(i.clamp(-0.5, 2.5).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 2, 2});
  CHECK(i.clamp(-inf, inf).to_vector<int64_t>() == i.to_vector<int64_t>());
  Tensor u = from_vector<uint8_t>({0, 100, 250}, {3});
  CHECK(u.clamp(-inf, 200).to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{0, 100, 200});
  CHECK(u.clamp(10, inf).to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{10, 100, 250});
  CHECK(u.clamp(300, 400).to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{255, 255, 255});
}

TEST_CASE("clamp: NaN stays NaN with no gradient, the bounds pass the gradient, min > max gives max") {
  Tensor x = from_vector<double>({std::nan(""), -2.0, -1.0, 0.3, 1.0, 4.0}, {6}).requires_grad_();
  Tensor y = x.clamp(-1.0, 1.0);
  auto v = y.to_vector<double>();
  CHECK(std::isnan(v[0]));
  CHECK(std::vector<double>(v.begin() + 1, v.end()) == std::vector<double>{-1.0, -1.0, 0.3, 1.0, 1.0});
  y.sum().backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0, 1, 1, 1, 0});
  CHECK(from_vector<double>({-3.0, 0.0, 3.0}, {3}).clamp(1.0, -1.0).to_vector<double>() ==
        std::vector<double>{-1.0, -1.0, -1.0});
}

TEST_CASE("leaky_relu's gradient at 0 is the slope, and hardswish's at -3 and 3 follow PyTorch") {
  Tensor x = from_vector<double>({-1.0, 0.0, 2.0}, {3}).requires_grad_();
  x.leaky_relu(0.1).sum().backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0.1, 0.1, 1.0});
  Tensor h = from_vector<double>({-4.0, -3.0, 0.0, 3.0, 4.0}, {5}).requires_grad_();
  h.hardswish().sum().backward();
  CHECK(h.grad().to_vector<double>() == std::vector<double>{0.0, -0.5, 0.5, 1.5, 1.0});
}
