// float64 finite-difference checks of every differentiable tensor op, on contiguous, strided
// (transposed / sliced) and broadcast inputs. One TEST_CASE per op, so `ctest -L gradcheck`
// lists each.
#include "autograd/node.h"
#include "test_util.h"

using namespace dl;
using V = std::vector<Tensor>;

namespace {
Tensor in(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) { return test::random_input(s, seed, lo, hi); }
Tensor positive(const Shape& s, uint64_t seed) { return in(s, seed, 0.5, 2.0); }
}  // namespace

TEST_CASE("gradcheck: neg") { CHECK_GRADCHECK([](const V& x) { return x[0].neg(); }, V{in({3, 4}, 1)}); }
TEST_CASE("gradcheck: exp") { CHECK_GRADCHECK([](const V& x) { return x[0].t().exp(); }, V{in({3, 4}, 2)}); }
TEST_CASE("gradcheck: log") { CHECK_GRADCHECK([](const V& x) { return x[0].t().log(); }, V{positive({3, 4}, 3)}); }
TEST_CASE("gradcheck: sqrt") { CHECK_GRADCHECK([](const V& x) { return x[0].sqrt(); }, V{positive({5}, 4)}); }
TEST_CASE("gradcheck: abs") { CHECK_GRADCHECK([](const V& x) { return x[0].abs(); }, V{in({4, 3}, 5)}); }
TEST_CASE("gradcheck: relu") { CHECK_GRADCHECK([](const V& x) { return x[0].t().relu(); }, V{in({4, 3}, 6)}); }
TEST_CASE("gradcheck: sigmoid") { CHECK_GRADCHECK([](const V& x) { return (x[0] * 4.0).sigmoid(); }, V{in({6}, 7)}); }
TEST_CASE("gradcheck: tanh") { CHECK_GRADCHECK([](const V& x) { return (x[0] * 2.0).tanh(); }, V{in({2, 3}, 8)}); }
TEST_CASE("gradcheck: pow") {
  CHECK_GRADCHECK([](const V& x) { return x[0].pow(3.0); }, V{in({5}, 9)});
  CHECK_GRADCHECK([](const V& x) { return x[0].pow(-1.5); }, V{positive({5}, 10)});
}

TEST_CASE("gradcheck: add with broadcasting") {
  CHECK_GRADCHECK([](const V& x) { return x[0] + x[1]; }, V{in({2, 3, 4}, 11), in({3, 1}, 12)});
}
TEST_CASE("gradcheck: sub with broadcasting") {
  CHECK_GRADCHECK([](const V& x) { return x[0].t() - x[1]; }, V{in({4, 3}, 13), in({4}, 14)});
}
TEST_CASE("gradcheck: mul with broadcasting") {
  CHECK_GRADCHECK([](const V& x) { return x[0] * x[1]; }, V{in({2, 1, 4}, 15), in({3, 1}, 16)});
}
TEST_CASE("gradcheck: div with broadcasting") {
  CHECK_GRADCHECK([](const V& x) { return x[0] / x[1]; }, V{in({3, 4}, 17), positive({4}, 18)});
}
TEST_CASE("gradcheck: scalar arithmetic") {
  CHECK_GRADCHECK([](const V& x) { return ((x[0] + 1.5) * 2.0 - 0.5) / 3.0; }, V{in({4}, 19)});
  CHECK_GRADCHECK([](const V& x) { return 2.0 / x[0] - x[0]; }, V{positive({4}, 20)});
}
TEST_CASE("gradcheck: maximum") {
  CHECK_GRADCHECK([](const V& x) { return maximum(x[0], x[1]); }, V{in({3, 4}, 21), in({4}, 22)});
}
TEST_CASE("gradcheck: where") {
  CHECK_GRADCHECK([](const V& x) { return where(x[0].gt(0.0), x[0] * 2.0, x[1]); }, V{in({3, 4}, 23), in({1, 4}, 24)});
}

TEST_CASE("gradcheck: sum over dims, keepdim or not") {
  CHECK_GRADCHECK([](const V& x) { return x[0].sum(); }, V{in({2, 3}, 25)});
  CHECK_GRADCHECK([](const V& x) { return x[0].sum({0, 2}); }, V{in({2, 3, 4}, 26)});
  CHECK_GRADCHECK([](const V& x) { return x[0].transpose(0, 2).sum({1}, true); }, V{in({2, 3, 4}, 27)});
}
TEST_CASE("gradcheck: mean") {
  CHECK_GRADCHECK([](const V& x) { return x[0].mean({-1}); }, V{in({3, 5}, 28)});
  CHECK_GRADCHECK([](const V& x) { return x[0].mean(); }, V{in({3, 5}, 29)});
}
TEST_CASE("gradcheck: max (all and along a dim)") {
  CHECK_GRADCHECK([](const V& x) { return x[0].max(); }, V{in({3, 5}, 30)});
  CHECK_GRADCHECK([](const V& x) { return x[0].max(1); }, V{in({3, 5}, 31)});
  CHECK_GRADCHECK([](const V& x) { return x[0].max(0, true); }, V{in({3, 5}, 32)});
}
TEST_CASE("gradcheck: var (biased and unbiased)") {
  CHECK_GRADCHECK([](const V& x) { return x[0].var({1}); }, V{in({3, 5}, 33)});
  CHECK_GRADCHECK([](const V& x) { return x[0].var({0, 2}, false, true); }, V{in({2, 3, 4}, 34)});
}

TEST_CASE("gradcheck: matmul (2-D, transposed, batched with broadcast, vectors)") {
  CHECK_GRADCHECK([](const V& x) { return x[0].matmul(x[1]); }, V{in({3, 4}, 35), in({4, 5}, 36)});
  CHECK_GRADCHECK([](const V& x) { return x[0].t().matmul(x[1].t()); }, V{in({4, 3}, 37), in({5, 4}, 38)});
  CHECK_GRADCHECK([](const V& x) { return x[0].matmul(x[1]); }, V{in({2, 3, 4}, 39), in({4, 2}, 40)});
  CHECK_GRADCHECK([](const V& x) { return x[0].matmul(x[1]); }, V{in({4}, 41), in({2, 4, 3}, 42)});
  CHECK_GRADCHECK([](const V& x) { return x[0].matmul(x[1]); }, V{in({3, 4}, 43), in({4}, 44)});
}

TEST_CASE("gradcheck: softmax") {
  CHECK_GRADCHECK([](const V& x) { return x[0].softmax(1); }, V{in({3, 5}, 45)});
  CHECK_GRADCHECK([](const V& x) { return x[0].softmax(0); }, V{in({3, 2, 4}, 46)});
}
TEST_CASE("gradcheck: log_softmax") {
  CHECK_GRADCHECK([](const V& x) { return x[0].log_softmax(-1); }, V{in({3, 5}, 47)});
  CHECK_GRADCHECK([](const V& x) { return x[0].t().log_softmax(1); }, V{in({4, 3}, 48)});
}
TEST_CASE("gradcheck: gather") {
  auto idx = from_vector<int64_t>({0, 2, 2, 1, 3, 0}, {3, 2});
  CHECK_GRADCHECK([idx](const V& x) { return x[0].gather(1, idx); }, V{in({3, 4}, 49)});
}
TEST_CASE("gradcheck: index_select") {
  auto idx = from_vector<int64_t>({2, 0, 2}, {3});
  CHECK_GRADCHECK([idx](const V& x) { return x[0].index_select(1, idx); }, V{in({2, 3, 2}, 50)});
}
TEST_CASE("gradcheck: cat") {
  CHECK_GRADCHECK([](const V& x) { return cat({x[0], x[1].t()}, 0); }, V{in({2, 3}, 51), in({3, 4}, 52)});
}
TEST_CASE("gradcheck: stack") {
  CHECK_GRADCHECK([](const V& x) { return stack({x[0], x[1]}, 1); }, V{in({2, 3}, 53), in({2, 3}, 54)});
}

TEST_CASE("gradcheck: views (view, reshape, permute, transpose, narrow, slice, select, expand, squeeze, unsqueeze, flatten)") {
  CHECK_GRADCHECK([](const V& x) { return x[0].view({4, 3}) * x[0].reshape({3, 4}).t(); }, V{in({2, 6}, 55)});
  CHECK_GRADCHECK([](const V& x) { return x[0].permute({2, 0, 1}).contiguous(); }, V{in({2, 3, 4}, 56)});
  CHECK_GRADCHECK([](const V& x) { return x[0].narrow(1, 1, 2).slice(0, 0, 3, 2); }, V{in({4, 4}, 57)});
  CHECK_GRADCHECK([](const V& x) { return x[0].select(1, 2).unsqueeze(0).expand({3, -1}); }, V{in({2, 4}, 58)});
  CHECK_GRADCHECK([](const V& x) { return x[0].unsqueeze(1).squeeze(1).flatten(); }, V{in({2, 3}, 59)});
  CHECK_GRADCHECK([](const V& x) { return x[0].transpose(0, 1).reshape({-1}); }, V{in({2, 3}, 60)});
}
TEST_CASE("gradcheck: clone and dtype round trip") {
  CHECK_GRADCHECK([](const V& x) { return x[0].clone().to(DType::Float32).to(DType::Float64); }, V{in({3}, 61)},
                  GradcheckOptions{1e-3, 1e-4});
}

TEST_CASE("gradcheck: a composite expression (two-layer net with cross-entropy by hand)") {
  auto labels = from_vector<int64_t>({1, 0, 2, 1}, {4, 1});
  CHECK_GRADCHECK(
      [labels](const V& x) {
        auto h = (x[0].matmul(x[1]) + x[2]).relu();
        auto logp = h.matmul(x[3]).log_softmax(1);
        return logp.gather(1, labels).mean().neg();
      },
      V{in({4, 5}, 62), in({5, 6}, 63), in({6}, 64), in({6, 3}, 65)});
}
