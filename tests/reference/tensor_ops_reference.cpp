// float32 forward and backward of each tensor op against PyTorch 1.13 (fixtures written by
// tests/fixtures/make_tensor_ops.py during the test run).
#include <functional>

#include "test_util.h"

using namespace dl;
using V = std::vector<Tensor>;

namespace {
// Runs `fn` on the fixture inputs of `name`, then compares output and input gradients.
void compare(const std::string& name, int n_inputs, const std::function<Tensor(const V&)>& fn,
             double rtol = 1e-5, double atol = 1e-6) {
  V xs;
  for (int i = 0; i < n_inputs; ++i) xs.push_back(test::fixture("tensor_ops", fmt::format("{}.x{}", name, i)).requires_grad_());
  Tensor y = fn(xs);
  INFO("op ", name, ": forward");
  CHECK_CLOSE(y, test::fixture("tensor_ops", name + ".out"), rtol, atol);
  y.backward(test::fixture("tensor_ops", name + ".gout"));
  for (int i = 0; i < n_inputs; ++i) {
    INFO("op ", name, ": gradient of input ", i);
    CHECK_CLOSE(xs[i].grad(), test::fixture("tensor_ops", fmt::format("{}.grad{}", name, i)), rtol, atol);
  }
}
}  // namespace

TEST_CASE("reference: unary ops") {
  compare("neg", 1, [](const V& x) { return x[0].neg(); });
  compare("exp", 1, [](const V& x) { return x[0].exp(); });
  compare("log", 1, [](const V& x) { return x[0].log(); });
  compare("sqrt", 1, [](const V& x) { return x[0].sqrt(); });
  compare("abs", 1, [](const V& x) { return x[0].abs(); });
  compare("relu", 1, [](const V& x) { return x[0].relu(); });
  compare("sigmoid", 1, [](const V& x) { return x[0].sigmoid(); });
  compare("tanh", 1, [](const V& x) { return x[0].tanh(); });
  compare("pow", 1, [](const V& x) { return x[0].pow(2.5); });
}

TEST_CASE("reference: binary ops with broadcasting") {
  compare("add", 2, [](const V& x) { return x[0] + x[1]; });
  compare("sub", 2, [](const V& x) { return x[0] - x[1]; });
  compare("mul", 2, [](const V& x) { return x[0] * x[1]; });
  compare("div", 2, [](const V& x) { return x[0] / x[1]; });
  compare("maximum", 2, [](const V& x) { return maximum(x[0], x[1]); });
  compare("where", 2, [](const V& x) { return where(x[0].gt(0.0), x[0], x[1]); });
}

TEST_CASE("reference: reductions") {
  compare("sum", 1, [](const V& x) { return x[0].sum({0, 2}); });
  compare("sum_keepdim", 1, [](const V& x) { return x[0].sum({1}, true); });
  compare("mean", 1, [](const V& x) { return x[0].mean({-1}); });
  compare("max", 1, [](const V& x) { return x[0].max(1); });
  compare("var", 1, [](const V& x) { return x[0].var({1}); });
}

TEST_CASE("reference: matmul") {
  compare("matmul", 2, [](const V& x) { return x[0].matmul(x[1]); }, 1e-5, 1e-5);
  compare("matmul_batched", 2, [](const V& x) { return x[0].matmul(x[1]); }, 1e-5, 1e-5);
  compare("matmul_t", 2, [](const V& x) { return x[0].t().matmul(x[1].t()); }, 1e-5, 1e-5);
}

TEST_CASE("reference: softmax and log_softmax") {
  compare("softmax", 1, [](const V& x) { return x[0].softmax(1); });
  compare("log_softmax", 1, [](const V& x) { return x[0].log_softmax(0); });
}

TEST_CASE("reference: indexing, cat and views") {
  Tensor gi = test::fixture("tensor_ops", "gather.index");
  compare("gather", 1, [gi](const V& x) { return x[0].gather(1, gi); });
  Tensor si = test::fixture("tensor_ops", "index_select.index");
  compare("index_select", 1, [si](const V& x) { return x[0].index_select(1, si); });
  compare("cat", 2, [](const V& x) { return cat({x[0], x[1]}, 1); });
  compare("permute", 1, [](const V& x) { return x[0].permute({2, 0, 1}).contiguous() * 2.0; });
  compare("expand", 1, [](const V& x) { return x[0].expand({4, 3, 5}) * 1.0; });
}
