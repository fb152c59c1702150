// Tensor core: creation, views, strided ops, broadcasting, reductions, indexing, printing, errors.
#include "test_util.h"
#include "tensor/ops.h"

using namespace dl;

namespace {
Tensor seq(const Shape& s, DType dt = DType::Float32) {
  return arange(0.0, static_cast<double>(shape_numel(s)), 1.0, dt).reshape(s);
}
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
}  // namespace

TEST_CASE("creation: zeros, ones, full, arange, from_vector, dtypes") {
  auto z = zeros({2, 3});
  CHECK(z.sizes() == Shape{2, 3});
  CHECK(z.dtype() == DType::Float32);
  CHECK(z.sum().item<double>() == 0.0);
  CHECK(ones({4}, DType::Float64).sum().item<double>() == 4.0);
  CHECK(full({2, 2}, 2.5).sum().item<double>() == 10.0);
  auto a = arange(5);
  CHECK(a.dtype() == DType::Int64);
  CHECK(a.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(0.0, 1.0, 0.25).numel() == 4);
  auto v = from_vector<uint8_t>({1, 2, 255}, {3});
  CHECK(v.dtype() == DType::UInt8);
  CHECK(v.at<int64_t>({2}) == 255);
  CHECK_THROWS_AS(from_vector<float>({1, 2, 3}, {2, 2}), dl::Error);
  CHECK_THROWS_AS(zeros({-1, 2}), dl::Error);
  // 64-byte alignment of storage
  CHECK(reinterpret_cast<uintptr_t>(zeros({7}).raw_data()) % 64 == 0);
}

TEST_CASE("generator: seeded, deterministic, platform-independent values") {
  Generator g(42);
  uint64_t first = g.next_u64();
  Generator h(42);
  CHECK(h.next_u64() == first);
  // xoshiro256** seeded by splitmix64(42): a fixed value that must not change across platforms
  Generator k(42);
  CHECK(k.next_u64() == first);
  manual_seed(7);
  auto a = randn({100});
  manual_seed(7);
  auto b = randn({100});
  CHECK(max_difference(a, b).abs_diff == 0.0);
  auto u = rand({10000}, DType::Float64);
  double m = u.mean().item<double>();
  CHECK(m > 0.48);
  CHECK(m < 0.52);
  CHECK(u.max().item<double>() < 1.0);
  auto n = randn({20000}, DType::Float64);
  CHECK(std::abs(n.mean().item<double>()) < 0.03);
  CHECK(std::abs(n.var({}).item<double>() - 1.0) < 0.05);
  // state round trip
  Generator s(3);
  s.normal();
  auto st = s.state();
  double next = s.normal();
  s.set_state(st);
  CHECK(s.normal() == next);
}

TEST_CASE("views share storage and never copy") {
  auto x = seq({2, 3, 4});
  auto v = x.view({6, 4});
  CHECK(v.storage() == x.storage());
  auto p = x.permute({2, 0, 1});
  CHECK(p.sizes() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK(p.storage() == x.storage());
  CHECK_FALSE(p.is_contiguous());
  CHECK(p.at<float>({3, 1, 2}) == x.at<float>({1, 2, 3}));
  auto t = x.transpose(0, 2);
  CHECK(t.at<float>({3, 2, 1}) == x.at<float>({1, 2, 3}));
  auto n = x.narrow(2, 1, 2);
  CHECK(n.sizes() == Shape{2, 3, 2});
  CHECK(n.at<float>({1, 1, 0}) == x.at<float>({1, 1, 1}));
  auto s = x.slice(1, 0, 3, 2);
  CHECK(s.sizes() == Shape{2, 2, 4});
  CHECK(s.at<float>({1, 1, 3}) == x.at<float>({1, 2, 3}));
  auto sel = x.select(1, -1);
  CHECK(sel.sizes() == Shape{2, 4});
  CHECK(sel.at<float>({1, 0}) == x.at<float>({1, 2, 0}));
  auto e = from_vector<float>({1, 2, 3}, {3, 1}).expand({3, 4});
  CHECK(e.strides() == Shape{1, 0});
  CHECK(e.at<float>({2, 3}) == 3.0f);
  auto u = x.unsqueeze(1);
  CHECK(u.sizes() == Shape{2, 1, 3, 4});
  CHECK(u.squeeze(1).sizes() == Shape{2, 3, 4});
  CHECK(ones({1, 3, 1}).squeeze().sizes() == Shape{3});
  CHECK(x.flatten(1).sizes() == Shape{2, 12});
  // view of a non-viewable layout throws, reshape copies
  CHECK_THROWS_AS(p.view({24}), dl::Error);
  auto r = p.reshape({24});
  CHECK(r.storage() != x.storage());
  CHECK(r.at<float>({1}) == x.at<float>({0, 1, 0}));
  // view with -1 and of compatible non-contiguous input
  CHECK(x.view({-1, 4}).sizes() == Shape{6, 4});
  CHECK(x.transpose(0, 1).view({3, 2, 2, 2}).sizes() == Shape{3, 2, 2, 2});
  CHECK_THROWS_AS(x.view({5, -1}), dl::Error);
  CHECK_THROWS_AS(x.select(0, 2), dl::Error);
  CHECK_THROWS_AS(x.permute({0, 0, 1}), dl::Error);
  CHECK_THROWS_AS(x.expand({3, 3, 4}), dl::Error);
}

TEST_CASE("contiguous copies strided data in order") {
  auto x = seq({3, 4});
  auto c = x.t().contiguous();
  CHECK(c.is_contiguous());
  CHECK(vals(c) == std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  auto sl = seq({10}).slice(0, 1, 10, 3).contiguous();
  CHECK(vals(sl) == std::vector<double>{1, 4, 7});
}

TEST_CASE("elementwise ops on contiguous and strided inputs, float32 and float64") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    auto x = seq({3, 4}, dt).div(10.0).sub(0.5);
    auto xt = x.t();  // strided
    CHECK_CLOSE(xt.exp().t(), x.exp(), 1e-6, 0);
    auto ex = x.to_vector<double>();
    auto check_map = [&](const Tensor& got, double (*f)(double)) {
      auto g = got.to_vector<double>();
      for (size_t i = 0; i < ex.size(); ++i) CHECK(g[i] == doctest::Approx(f(ex[i])).epsilon(1e-6));
    };
    check_map(x.neg(), [](double v) { return -v; });
    check_map(x.exp(), [](double v) { return std::exp(v); });
    check_map(x.abs(), [](double v) { return std::abs(v); });
    check_map(x.relu(), [](double v) { return v > 0 ? v : 0.0; });
    check_map(x.sigmoid(), [](double v) { return 1 / (1 + std::exp(-v)); });
    check_map(x.tanh(), [](double v) { return std::tanh(v); });
    check_map(x.pow(3.0), [](double v) { return v * v * v; });
    check_map(x.abs().add(1.0).log(), [](double v) { return std::log(std::abs(v) + 1); });
    check_map(x.abs().sqrt(), [](double v) { return std::sqrt(std::abs(v)); });
  }
  // sigmoid stays finite for large |x|
  auto big = from_vector<float>({-1000, 1000}, {2}).sigmoid();
  CHECK(big.at<float>({0}) == 0.0f);
  CHECK(big.at<float>({1}) == 1.0f);
}

TEST_CASE("binary ops broadcast like NumPy and promote types") {
  auto a = seq({2, 1, 3});
  auto b = seq({4, 1});
  auto c = a + b;
  CHECK(c.sizes() == Shape{2, 4, 3});
  CHECK(c.at<float>({1, 3, 2}) == a.at<float>({1, 0, 2}) + b.at<float>({3, 0}));
  CHECK((a * b).at<float>({1, 2, 1}) == a.at<float>({1, 0, 1}) * b.at<float>({2, 0}));
  CHECK((a - b).at<float>({0, 3, 0}) == -3.0f);
  auto d = (a + 1.0) / (b + 1.0);
  CHECK(d.at<float>({1, 1, 2}) == doctest::Approx(6.0 / 2.0));
  CHECK(maximum(a, b).at<float>({0, 3, 1}) == 3.0f);
  // promotion
  auto i = arange(3);
  auto f = ones({3}, DType::Float64);
  CHECK((i + f).dtype() == DType::Float64);
  CHECK((i + i).dtype() == DType::Int64);
  CHECK_THROWS_AS(seq({2, 3}) + seq({3, 2}), dl::Error);
  CHECK_THROWS_AS(i / arange(3), dl::Error);  // integer division by zero is refused
  // 2.0 - x and 2.0 / x
  auto x = from_vector<float>({1, 2, 4}, {3});
  CHECK(vals(2.0 - x) == std::vector<double>{1, 0, -2});
  CHECK(vals(2.0 / x) == std::vector<double>{2, 1, 0.5});
}

TEST_CASE("comparisons and where") {
  auto x = from_vector<float>({-1, 0, 2}, {3});
  auto m = x.gt(0.0);
  CHECK(m.dtype() == DType::UInt8);
  CHECK(m.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1});
  CHECK(x.eq(0.0).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 0});
  CHECK(x.lt(zeros({1})).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
  CHECK(x.ge(zeros({1})).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 1});
  CHECK(x.le(zeros({1})).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0});
  CHECK(x.ne(zeros({1})).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
  auto w = where(m, x, full({1}, 7.0));
  CHECK(vals(w) == std::vector<double>{7, 7, 2});
  CHECK_THROWS_AS(where(x, x, x), dl::Error);
}

TEST_CASE("reductions over any dims with keepdim") {
  auto x = seq({2, 3, 4}, DType::Float64);
  CHECK(x.sum().item<double>() == 276.0);
  auto s1 = x.sum({1});
  CHECK(s1.sizes() == Shape{2, 4});
  CHECK(s1.at<double>({1, 2}) == 14 + 18 + 22);
  auto s02 = x.sum({0, 2}, true);
  CHECK(s02.sizes() == Shape{1, 3, 1});
  CHECK(s02.at<double>({0, 1, 0}) == (4 + 5 + 6 + 7) + (16 + 17 + 18 + 19));
  CHECK(x.sum({-1}).sizes() == Shape{2, 3});
  CHECK(x.mean({0}).at<double>({2, 3}) == (11 + 23) / 2.0);
  CHECK(x.max().item<double>() == 23);
  auto mx = x.max(1);
  CHECK(mx.sizes() == Shape{2, 4});
  CHECK(mx.at<double>({0, 0}) == 8);
  auto am = x.neg().argmax(2, true);
  CHECK(am.sizes() == Shape{2, 3, 1});
  CHECK(am.at<int64_t>({1, 1, 0}) == 0);
  auto v = from_vector<double>({1, 2, 3, 4}, {4});
  CHECK(v.var({0}).item<double>() == doctest::Approx(1.6666666667));
  CHECK(v.var({0}, false).item<double>() == doctest::Approx(1.25));
  // on a strided view
  CHECK(x.transpose(0, 2).sum({0}).at<double>({2, 1}) == x.sum({2}).at<double>({1, 2}));
  CHECK_THROWS_AS(x.sum({0, 0}), dl::Error);
  CHECK_THROWS_AS(x.sum({3}), dl::Error);
  // integer sums
  CHECK(arange(5).sum().dtype() == DType::Int64);
  CHECK(arange(5).sum().item<int64_t>() == 10);
}

TEST_CASE("matmul: 2-D, batched with broadcasting, vectors, transposed operands") {
  auto a = seq({2, 3}, DType::Float64);
  auto b = seq({3, 2}, DType::Float64);
  auto c = a.matmul(b);
  CHECK(vals(c) == std::vector<double>{10, 13, 28, 40});
  CHECK(vals(b.t().matmul(a.t())) == std::vector<double>{10, 28, 13, 40});
  auto ba = seq({4, 2, 3}).div(10.0);
  auto bb = seq({3, 5}).div(7.0);
  auto bc = ba.matmul(bb);
  CHECK(bc.sizes() == Shape{4, 2, 5});
  CHECK_CLOSE(bc.select(0, 3), ba.select(0, 3).matmul(bb), 1e-6, 1e-6);
  auto v = from_vector<double>({1, 2, 3}, {3});
  CHECK(vals(a.matmul(v)) == std::vector<double>{8, 26});
  CHECK(v.matmul(v).item<double>() == 14);
  CHECK(v.matmul(b).sizes() == Shape{2});
  CHECK_THROWS_AS(a.matmul(a), dl::Error);
  // operands a GEMM cannot address directly (stride-0 rows, strided columns) are handled right
  auto row = seq({1, 6}, DType::Float64);
  auto w = seq({6, 3}, DType::Float64);
  auto expanded = row.expand({5, 6}).matmul(w);
  for (int64_t i = 0; i < 5; ++i) CHECK(vals(expanded.select(0, i)) == vals(row.matmul(w).select(0, 0)));
  auto strided = seq({4, 12}, DType::Float64).slice(1, 0, 12, 2);  // (4, 6), column stride 2
  CHECK_CLOSE(strided.matmul(w), strided.contiguous().matmul(w), 0, 0);
  CHECK_CLOSE(w.t().matmul(row.expand({6, 6}).t()), w.t().matmul(row.expand({6, 6}).contiguous().t()), 0, 0);
  // a larger product against a direct sum
  manual_seed(1);
  auto x = randn({33, 65}, DType::Float64), y = randn({65, 17}, DType::Float64);
  auto z = x.matmul(y);
  double direct = 0;
  for (int k = 0; k < 65; ++k) direct += x.at<double>({5, k}) * y.at<double>({k, 9});
  CHECK(z.at<double>({5, 9}) == doctest::Approx(direct).epsilon(1e-12));
}

TEST_CASE("softmax and log_softmax are stable and normalised over any dim") {
  auto x = from_vector<float>({1000, 1001, 1002, -5, 0, 5}, {2, 3});
  auto s = x.softmax(1);
  CHECK(s.sum({1}).at<float>({0}) == doctest::Approx(1.0));
  CHECK(s.at<float>({0, 2}) == doctest::Approx(0.66524096));
  auto ls = x.log_softmax(1);
  CHECK(ls.at<float>({0, 0}) == doctest::Approx(-2.40760596));
  auto s0 = x.softmax(0);
  CHECK(s0.sum({0}).at<float>({1}) == doctest::Approx(1.0));
  CHECK_CLOSE(x.log_softmax(-1).exp(), s, 1e-6, 1e-7);
}

TEST_CASE("gather, index_select, cat, stack") {
  auto x = seq({3, 4});
  auto idx = from_vector<int64_t>({3, 0, 1, 1, 2, 2}, {3, 2});
  auto g = x.gather(1, idx);
  CHECK(vals(g) == std::vector<double>{3, 0, 5, 5, 10, 10});
  CHECK_THROWS_AS(x.gather(1, from_vector<int64_t>({4}, {1, 1})), dl::Error);
  auto is = x.index_select(0, from_vector<int64_t>({2, 0}, {2}));
  CHECK(vals(is.select(0, 0)) == std::vector<double>{8, 9, 10, 11});
  auto c = cat({x, x.slice(0, 0, 1)}, 0);
  CHECK(c.sizes() == Shape{4, 4});
  CHECK(c.at<float>({3, 2}) == 2);
  auto st = stack({x, x}, 1);
  CHECK(st.sizes() == Shape{3, 2, 4});
  CHECK_THROWS_AS(cat({x, seq({3, 5})}, 0), dl::Error);
}

TEST_CASE("dtype conversion and in-place ops") {
  auto x = from_vector<float>({1.7f, -2.2f}, {2});
  CHECK(x.to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{1, -2});
  CHECK(x.to(DType::Float64).dtype() == DType::Float64);
  auto y = zeros({2, 2});
  y.copy_(from_vector<float>({1, 2}, {2}));
  CHECK(vals(y) == std::vector<double>{1, 2, 1, 2});
  y.add_(ones({2, 2}), 2.0);
  CHECK(vals(y) == std::vector<double>{3, 4, 3, 4});
  y.mul_(0.5);
  CHECK(vals(y) == std::vector<double>{1.5, 2, 1.5, 2});
  y.t().fill_(1.0);
  CHECK(y.sum().item<double>() == 4);
  y.zero_();
  CHECK(y.sum().item<double>() == 0);
}

TEST_CASE("printing: shape, dtype, device and truncated values") {
  auto s = fmt::format("{}", seq({2, 3}));
  CHECK(s.find("shape=[2, 3]") != std::string::npos);
  CHECK(s.find("dtype=float32") != std::string::npos);
  CHECK(s.find("device=cpu") != std::string::npos);
  CHECK(s.find("5.0000") != std::string::npos);
  auto big = fmt::format("{}", arange(1000));
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.find("999") != std::string::npos);
  CHECK(big.size() < 200);
  CHECK(fmt::format("{}", ones({2}).requires_grad_()).find("requires_grad") != std::string::npos);
}

// view and sum errors: the op-case table (tests/op_cases/op_table.cpp, view_reshape, sum).
TEST_CASE("errors name the problem") {
  CHECK_THROWS_WITH_AS(seq({2}).item<float>(), doctest::Contains("one element"), dl::Error);
  CHECK_THROWS_WITH_AS(Device::parse("tpu"), doctest::Contains("unknown device"), dl::Error);
  CHECK_THROWS_WITH_AS(Tensor().sizes(), doctest::Contains("undefined tensor"), dl::Error);
}
