// Autocast (tensor/autocast.h): matmul, linear and conv2d under dl::autocast(kCPU, BFloat16), forward
// and both gradients, against float64 computations of the same graph with the operands rounded to
// bfloat16.
//
// What autocast promises for one GEMM-backed op y = f(x, w): the kernel rounds each GEMM operand to
// bfloat16 (round to nearest even) and sums the exact products in float32. In backward the upstream
// gradient G is an operand too, so
//   y  = f(r(x), r(w))           dx = f_x^T(r(G), r(w))          dw = f_w^T(r(G), r(x))
// with r() the rounding, each computed here in float64 from the same rounded values: the only
// difference left is float32 summation of K products, bounded by |err| <= K * 2^-24 * sum_k |a_k b_k|
// (the "bound" tensors: the same op applied to absolute values, in float64), K being the length of
// that product's reduction (C*kh*kw forward, O/groups*kh*kw for dx, N*Ho*Wo for dw). A kernel that did not round (plain float32) would be off by about 2^-9 of the
// bound, hundreds of times more for the K used here, so each check can fail for the right reason.
// The float64 gradients themselves are checked against finite differences by the op-case gradcheck
// suite; the reference here is the analytic float64 gradient of the same graph.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/autocast.h"
#include "autocast_cases.h"
#include "test_util.h"

using namespace dl;

namespace {

// float32 -> bfloat16 -> float64, elementwise (the rounding autocast's kernels apply: the dtype's
// round to nearest even).
Tensor round_bf16(const Tensor& t) { return t.detach().to(DType::Float32).to(DType::BFloat16).to(DType::Float64); }

Tensor f32(const Shape& s, uint64_t seed) { return test::random_input(s, seed, -1.0, 1.0, false).to(DType::Float32); }

Tensor leaf(const Tensor& t) {
  Tensor c = t.detach().clone();
  c.requires_grad_(true);
  return c;
}

// |actual - expected| <= K * 2^-24 * bound + 1e-30, elementwise (the classical bound of a float32 sum).
void check_within(const Tensor& actual, const Tensor& expected, const Tensor& bound, int64_t K, const char* what) {
  INFO(what);
  Tensor err = (actual.detach().to(DType::Float64) - expected.detach()).abs();
  Tensor allowed = bound.detach() * (static_cast<double>(K) * std::ldexp(1.0, -24)) + 1e-30;
  Tensor excess = err - allowed;
  const double worst = excess.max().item<double>();
  INFO("worst excess over the bound: " << worst << ", largest error " << err.max().item<double>());
  CHECK(worst <= 0.0);
}

// y = op(x, w) in float32 under autocast and in float64 from rounded operands; checks y, dx, dw.
// Kf, Kx, Kw: the reduction lengths of the forward product and of the two gradient products.
template <typename Op>
void check_op(const char* name, const Tensor& x32, const Tensor& w32, int64_t Kf, int64_t Kx, int64_t Kw, Op op) {
  INFO(name);
  // autocast side: forward in the scope, backward outside it (the engine restores the precision)
  Tensor x = leaf(x32), w = leaf(w32);
  Tensor y;
  {
    auto scope = autocast(kCPU, DType::BFloat16);
    y = op(x, w);
  }
  CHECK(y.dtype() == DType::Float32);
  Tensor G = f32(y.sizes(), 99);
  (y * G).sum().backward();

  // float64 side, operands rounded as autocast's kernels round them
  Tensor rx = round_bf16(x32), rw = round_bf16(w32), rG = round_bf16(G);
  Tensor y_ref = op(rx, rw);
  Tensor y_bound = op(rx.abs(), rw.abs());
  check_within(y, y_ref, y_bound, Kf, "forward");
  // its plain float32 result must differ: the check above is not vacuous
  Tensor y_plain = op(x32, w32);
  CHECK((y_plain - y.detach()).abs().max().item<float>() > 0.0f);

  auto grad_of = [&](const Tensor& gx_seed, const Tensor& fixed_w, bool wrt_x, const Tensor& upstream) {
    Tensor a = leaf(gx_seed);
    Tensor out = wrt_x ? op(a, fixed_w) : op(fixed_w, a);
    (out * upstream).sum().backward();
    return a.grad();
  };
  // dx = f_x^T(r(G), r(w)); bound from |G|, |w|
  Tensor dx_ref = grad_of(rx, rw, true, rG);
  Tensor dx_bound = grad_of(rx, rw.abs(), true, rG.abs());
  check_within(x.grad(), dx_ref, dx_bound, Kx, "grad input");
  // dw = f_w^T(r(G), r(x))
  Tensor a = leaf(rw);
  (op(rx, a) * rG).sum().backward();
  Tensor dw_ref = a.grad();
  Tensor b = leaf(rw);
  (op(rx.abs(), b) * rG.abs()).sum().backward();
  check_within(w.grad(), dw_ref, b.grad(), Kw, "grad weight");
}

}  // namespace

TEST_CASE("autocast bf16: conv2d forward and gradients against float64 from rounded operands") {
  for (const test::AutocastConvCase& c : test::autocast_conv_cases()) {
    const Tensor b32 = f32({c.w[0]}, 11).abs();
    auto op = [&](const Tensor& x, const Tensor& w) {
      // the bias is added in float32 after the float32 sums (float64 on the reference side)
      return conv2d(x, w, c.bias ? b32.to(x.dtype()) : Tensor(), c.p);
    };
    const Shape y = op(f32(c.x, 1), f32(c.w, 2)).sizes();
    const int64_t taps = c.w[2] * c.w[3];
    // + 1 on the forward's K: the bias add's rounding
    check_op(c.name, f32(c.x, 1), f32(c.w, 2), c.w[1] * taps + 1, c.w[0] / c.p.groups * taps, y[0] * y[2] * y[3], op);
  }
}

TEST_CASE("autocast bf16: linear and matmul forward and gradients against float64 from rounded operands") {
  check_op("linear (37, 70) x (45, 70)^T", f32({37, 70}, 3), f32({45, 70}, 4), 70, 45, 37,
           [](const Tensor& x, const Tensor& w) { return linear(x, w); });
  // the weight's gradient sums the batch's 3 matrices: 3 * 17 products
  check_op("batched matmul (3, 17, 40) @ (40, 23)", f32({3, 17, 40}, 5), f32({40, 23}, 6), 40, 23, 3 * 17,
           [](const Tensor& a, const Tensor& b) { return a.matmul(b); });
  check_op("matmul with transposed operands", f32({50, 33}, 7), f32({29, 50}, 8), 50, 29, 33,
           [](const Tensor& a, const Tensor& b) { return a.transpose(0, 1).matmul(b.transpose(0, 1)).t(); });
}

TEST_CASE("autocast: scopes nest and restore, float64 is untouched, bad dtypes are refused") {
  CHECK(autocast_dtype(DeviceType::CPU) == DType::Float32);
  {
    auto outer = autocast(kCPU, DType::BFloat16);
    CHECK(autocast_dtype(DeviceType::CPU) == DType::BFloat16);
    CHECK(autocast_dtype(DeviceType::CUDA) == DType::Float32);
    {
      auto inner = autocast(kCPU, DType::Float32);
      CHECK(autocast_dtype(DeviceType::CPU) == DType::Float32);
    }
    CHECK(autocast_dtype(DeviceType::CPU) == DType::BFloat16);
    {
      auto off = autocast(kCPU, DType::BFloat16, /*enabled=*/false);  // as torch.autocast(enabled=False): off
      CHECK(autocast_dtype(DeviceType::CPU) == DType::Float32);
    }
    CHECK(autocast_dtype(DeviceType::CPU) == DType::BFloat16);  // and back on after it
    {
      auto cuda_off = autocast(Device(DeviceType::CUDA), DType::Float16, false);  // another device: CPU untouched
      CHECK(autocast_dtype(DeviceType::CPU) == DType::BFloat16);
    }
  }
  CHECK(autocast_dtype(DeviceType::CPU) == DType::Float32);
  test::check_throws_with([] { auto s = autocast(kCPU, DType::Float16); }, {"cpu", "float16", "bfloat16"});
  test::check_throws_with([] { auto s = autocast(kCPU, DType::Int64); }, {"int64"});
  CHECK(autocast_dtype(DeviceType::CPU) == DType::Float32);  // a refused scope leaves the state alone
  test::check_throws_with([] { parse_precision("bf8"); }, {"bf8", "fp32", "bf16"});
  CHECK(parse_precision("bf16") == DType::BFloat16);
  CHECK(std::string(precision_name(DType::BFloat16)) == "bf16");

  // float64 operands multiply in float64 inside a scope too
  Tensor x = test::random_input({2, 3, 6, 6}, 11, -1, 1, false), w = test::random_input({4, 3, 3, 3}, 12, -1, 1, false);
  Tensor plain = conv2d(x, w);
  Tensor in_scope;
  {
    auto s = autocast(kCPU, DType::BFloat16);
    in_scope = conv2d(x, w);
  }
  CHECK((plain - in_scope).abs().max().item<double>() == 0.0);
}

TEST_CASE("autocast bf16: a small CNN's loss and gradients stay close to float32") {
  manual_seed(5);
  Tensor x = f32({8, 3, 12, 12}, 21);
  Tensor target = from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1, 2}, {8});
  Tensor w1 = leaf(f32({16, 3, 3, 3}, 22) * 0.3), w2 = leaf(f32({5, 16 * 36}, 23) * 0.05);
  Tensor rm = zeros({16}), rv = ones({16});
  auto run = [&](bool bf16) {
    w1.zero_grad();
    w2.zero_grad();
    Tensor loss;
    {
      auto s = autocast(kCPU, DType::BFloat16, bf16);
      Conv2dParams p;
      p.padding = {1, 1};
      Tensor h = batch_norm(conv2d(x, w1, Tensor(), p), rm, rv, Tensor(), Tensor(), true, 0.0, 1e-5).relu();
      h = max_pool2d(h, {2, 2});
      loss = cross_entropy(linear(h.flatten(1), w2), target);
    }
    CHECK(loss.dtype() == DType::Float32);  // losses stay float32
    loss.backward();
    return std::tuple{loss.item<float>(), w1.grad().clone(), w2.grad().clone()};
  };
  auto [l32, g1_32, g2_32] = run(false);
  auto [l16, g1_16, g2_16] = run(true);
  INFO("loss fp32 " << l32 << ", bf16 " << l16);
  CHECK(std::abs(l16 - l32) <= 0.01 * std::abs(l32));
  CHECK(l16 != l32);
  // bf16 operands carry a relative error of 2^-9 each; the rigorous bounds are the cases above. Here
  // the conv weight's gradient also passes batch norm's backward, which subtracts the batch mean of
  // the gradient: a cancellation that magnifies the relative error (measured: 2% of the largest
  // entry), so this only checks the two runs agree to 10%
  for (auto [a, b] : {std::pair{g1_16, g1_32}, std::pair{g2_16, g2_32}}) {
    const double scale = b.abs().max().item<float>();
    CHECK((a - b).abs().max().item<float>() <= 0.1 * scale);
  }
}
