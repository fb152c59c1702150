// Math written as math: the Tensor operators and methods that backward closures, optimizer steps
// and the training loop use. With grad mode off (as inside every backward closure: the engine
// holds a NoGradGuard) an operator must do its raw op and no autograd work; the in-place methods
// must write into the tensor's own memory; the scalar-on-left forms and helpers must be right.
#include <atomic>
#include <cstdlib>
#include <new>

#include "autograd/node.h"
#include "test_util.h"

// Counts every operator new in this test executable (the allocations autograd bookkeeping makes:
// nodes, closures, saved aliases, edge lists). Tensor storage comes from the CPU allocator instead,
// counted by cpu_allocator_stats().
namespace {
std::atomic<long> g_news{0};
}
namespace {
[[gnu::noinline]] void* counted_alloc(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void counted_free(void* p) noexcept { std::free(p); }
}  // namespace
void* operator new(size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }

using namespace dl;

namespace {
template <typename Fn>
long news_during(Fn&& fn) {
  long before = g_news.load();
  fn();
  return g_news.load() - before;
}
uint64_t storage_allocations() { return cpu_allocator_stats().allocations; }
}  // namespace

TEST_CASE("with grad mode off an operator records nothing and costs what it costs on a plain tensor") {
  Tensor leaf = randn({64}).requires_grad_();
  Tensor plain = leaf.detach();
  Tensor other = randn({64});
  Tensor out;
  auto math = [&](const Tensor& a) { out = (1 - a * other).sqrt() / 2.0; };
  math(leaf);  // warm-up: a first call may initialise statics
  long recorded = news_during([&] { math(leaf); });
  CHECK(out.grad_fn() != nullptr);
  out = Tensor();  // frees the recorded graph outside the counted windows
  NoGradGuard ng;
  long on_leaf = news_during([&] { math(leaf); });
  CHECK(out.grad_fn() == nullptr);
  CHECK_FALSE(out.requires_grad());
  long on_plain = news_during([&] { math(plain); });
  CHECK(on_leaf == on_plain);  // no saved alias, closure, node or edge list for the leaf
  CHECK(recorded > on_leaf);   // recording does allocate, so the count can tell
}

TEST_CASE("a backward closure builds no graph: gradients come out as plain tensors") {
  Tensor x = test::random_input({3, 4}, 5);
  Tensor w = test::random_input({4}, 6);
  Tensor y = ((x * w).tanh().sigmoid() / (1 + x.abs())).sum();
  y.backward();
  for (const Tensor& t : {x, w}) {
    REQUIRE(t.grad().defined());
    CHECK(t.grad().grad_fn() == nullptr);
    CHECK_FALSE(t.grad().requires_grad());
  }
  CHECK(autograd::grad_mode_enabled());  // the engine's NoGradGuard was undone
}

TEST_CASE("scalar on the left: 1 - x is one pass with the values of -x + 1, and its gradient is -1") {
  Tensor x = test::random_input({5, 3}, 11).to(DType::Float32).detach().requires_grad_();
  Tensor y = 1 - x;
  {
    NoGradGuard ng;
    CHECK(max_difference(y, (-x) + 1.0).abs_diff == 0.0);
  }
  CHECK(y.grad_fn()->name() == "RsubBackward");
  y.sum().backward();
  CHECK(max_difference(x.grad(), full({5, 3}, -1.0)).abs_diff == 0.0);
  CHECK_GRADCHECK([](const std::vector<Tensor>& v) { return 0.5 - v[0] * v[0]; }, {test::random_input({3, 2}, 12)});
  CHECK_GRADCHECK([](const std::vector<Tensor>& v) { return 2.0 / (v[0] + 3.0); }, {test::random_input({3, 2}, 13)});
}

TEST_CASE("sum_to_size and sign") {
  Tensor x = test::random_input({2, 3, 4}, 21);
  Tensor s = x.sum_to_size({3, 1});
  CHECK(s.sizes() == Shape{3, 1});
  CHECK_CLOSE(s, x.sum({0}).sum({1}, true), 1e-12, 1e-12);
  CHECK(x.sum_to_size({2, 3, 4}).sizes() == Shape{2, 3, 4});
  test::check_throws_with([&] { x.sum_to_size({5}); }, {"sum_to", "[5]"});
  CHECK_GRADCHECK([](const std::vector<Tensor>& v) { return v[0].sum_to_size({1, 4}) * 3.0; }, {test::random_input({2, 3, 4}, 22)});
  Tensor g = from_vector<double>({-2.0, 0.0, 0.5}, {3});
  CHECK(g.sign().to_vector<double>() == std::vector<double>{-1.0, 0.0, 1.0});
}

TEST_CASE("the in-place methods write into the tensor's own memory, with no tensor-sized temporary") {
  Tensor m = from_vector<float>({1, -2, 3, -4}, {2, 2});
  const void* where = m.raw_data();
  Tensor v = from_vector<float>({2, 2, 2, 2}, {2, 2});
  uint64_t before = storage_allocations();
  m.mul_(v);  // (2, 2) * (2, 2): no allocation at all
  CHECK(storage_allocations() == before);
  m.mul_(0.5).add_(1.0).div_(2.0);  // each: one 0-d scalar operand, never a (2, 2) temporary
  CHECK(storage_allocations() - before <= 3);
  m.maximum_(from_vector<float>({1.0F, 0.0F}, {2}));  // broadcast over rows
  CHECK(m.raw_data() == where);
  // (x * 2 * 0.5 + 1) / 2, then the larger of it and (1, 0) in each row
  CHECK(m.to_vector<float>() == std::vector<float>{1.0F, 0.0F, 2.0F, 0.0F});
  // refused on a tensor that requires grad while grad mode is on; fine under NoGradGuard
  Tensor p = ones({2}).requires_grad_();
  test::check_throws_with([&] { p.div_(2.0); }, {"div_", "in-place", "NoGradGuard"});
  test::check_throws_with([&] { p.maximum_(zeros({2})); }, {"maximum_", "in-place"});
  {
    NoGradGuard ng;
    p.add_(1.0).mul_(full({2}, 3.0));
  }
  CHECK(p.to_vector<float>() == std::vector<float>{6.0F, 6.0F});
  test::check_throws_with([&] { from_vector<int64_t>({1, 2}, {2}).div_(0.0); }, {"integer division by zero"});
}
