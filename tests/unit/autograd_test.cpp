// The autograd engine: accumulation, broadcasting and views, grad mode, retain_graph, deep chains.
#include "autograd/node.h"
#include "test_util.h"

using namespace dl;

TEST_CASE("leaves accumulate .grad across backward calls") {
  auto x = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  (x * x).sum().backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  (x * 3.0).sum().backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a tensor used twice gets the sum of both paths") {
  auto x = from_vector<double>({2}, {1}).requires_grad_();
  auto y = x * x + x.exp() * x;  // d/dx = 2x + e^x (1 + x)
  y.sum().backward();
  CHECK(x.grad().item<double>() == doctest::Approx(4 + std::exp(2.0) * 3));
}

TEST_CASE("gradients through broadcasting are reduced to the input's shape") {
  auto a = ones({2, 3}, DType::Float64).requires_grad_();
  auto b = ones({3}, DType::Float64).requires_grad_();
  auto c = ones({2, 1}, DType::Float64).requires_grad_();
  ((a + b) * c).sum().backward();
  CHECK(b.grad().sizes() == Shape{3});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
  CHECK(c.grad().sizes() == Shape{2, 1});
  CHECK(c.grad().to_vector<double>() == std::vector<double>{6, 6});
}

TEST_CASE("gradients through views") {
  auto x = arange(0.0, 6.0, 1.0, DType::Float64).reshape({2, 3}).detach().requires_grad_();
  auto y = x.t().select(0, 1) * 2.0;  // column 1, doubled
  y.sum().backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 2, 0, 0, 2, 0});
}

TEST_CASE("backward with an explicit gradient for non-scalars") {
  auto x = ones({2, 2}, DType::Float64).requires_grad_();
  auto y = x * 3.0;
  y.backward(from_vector<double>({1, 2, 3, 4}, {2, 2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 6, 9, 12});
  auto z = x * 2.0;
  CHECK_THROWS_WITH_AS(z.backward(), doctest::Contains("scalar"), dl::Error);
  CHECK_THROWS_AS(z.backward(ones({3}, DType::Float64)), dl::Error);
}

TEST_CASE("second backward without retain_graph is a clear error, with it, it works") {
  auto x = ones({2}, DType::Float64).requires_grad_();
  auto y = (x.exp() * x).sum();
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("retain_graph"), dl::Error);
  auto x2 = ones({2}, DType::Float64).requires_grad_();
  auto y2 = (x2.exp() * x2).sum();
  y2.backward({}, true);
  y2.backward();
  CHECK(x2.grad().at<double>({0}) == doctest::Approx(2 * 2 * std::exp(1.0)));
}

TEST_CASE("backward on a tensor that needs no grad is a clear error") {
  auto x = ones({2});
  CHECK_THROWS_WITH_AS(x.sum().backward(), doctest::Contains("does not require grad"), dl::Error);
}

TEST_CASE("NoGradGuard and detach stop recording") {
  auto x = ones({2}, DType::Float64).requires_grad_();
  {
    NoGradGuard g;
    auto y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  auto y = x * 2.0;
  CHECK(y.requires_grad());
  CHECK(y.grad_fn() != nullptr);
  CHECK(y.grad_fn()->name() == "MulScalarBackward");
  auto d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.storage() == y.storage());
  // in-place on a tensor requiring grad is refused unless under NoGradGuard
  CHECK_THROWS_WITH_AS(x.mul_(2.0), doctest::Contains("in-place"), dl::Error);
  {
    NoGradGuard g;
    x.mul_(2.0);
  }
  CHECK(x.at<double>({0}) == 2.0);
  CHECK_THROWS_AS(arange(3).requires_grad_(), dl::Error);
  CHECK_THROWS_AS(y.requires_grad_(false), dl::Error);
}

TEST_CASE("a chain of 10,000 ops back-propagates without stack overflow and frees its graph") {
  auto x = ones({4}, DType::Float64).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 10000; ++i) y = y * 1.0001;
  y.sum().backward();
  CHECK(x.grad().at<double>({0}) == doctest::Approx(std::pow(1.0001, 10000)));
  // the graph's saved tensors were released: a second backward fails rather than reusing them
  CHECK_THROWS_AS(y.sum().backward(), dl::Error);
  // dropping a 100,000-node graph must not recurse in destructors
  Tensor z = x;
  for (int i = 0; i < 100000; ++i) z = z + 1.0;
  CHECK(z.at<double>({0}) == doctest::Approx(100001.0));
  CHECK(z.grad_fn() != nullptr);
  z = Tensor();  // freeing it must return: a recursive destructor would overflow the stack here
  CHECK_FALSE(z.defined());
}

TEST_CASE("saved tensors are released after backward") {
  std::weak_ptr<Storage> saved;
  auto x = ones({1000}, DType::Float64).requires_grad_();
  {
    auto e = x.exp();
    saved = e.storage();
    auto loss = (e * 2.0).sum();
    e = Tensor();
    CHECK_FALSE(saved.expired());  // kept by ExpBackward for backward
    loss.backward();
    CHECK(saved.expired());  // freed by backward (no retain_graph)
  }
}

TEST_CASE("integer results never require grad") {
  auto x = ones({3}, DType::Float64).requires_grad_();
  auto am = x.argmax(0);
  CHECK_FALSE(am.requires_grad());
  auto m = x.gt(0.5);
  CHECK_FALSE(m.requires_grad());
}
