// Autocast on CUDA (tensor/autocast.h, cuda/blas.cpp gemm_rounded, cuda/cudnn.cpp, cuda/round.cu):
// matmul, linear and conv2d under dl::autocast(cuda, BFloat16 / Float16), forward and both
// gradients, on both backends, against
//   - float64 computations of the same graph from the operands rounded on the host (bfloat16 with
//     tensor/cpu/gemm_bf16.h's rounding, float16 with round_fp16 below), as
//     tests/gradcheck/autocast_test.cpp does for the CPU: y = f(r(x), r(w)), dx = f_x^T(r(G), r(w)),
//     dw = f_w^T(r(G), r(x)); the float32 sums of K exact products stay within K * 2^-24 * sum|a b|;
//   - and, for bfloat16, the CPU's autocast result (the same rounded operands: within two such bounds).
// Slack per path, next to the check: cuBLAS on tensor cores x4 (their float32 accumulation is not
// guaranteed to be round-to-nearest at every add); cuDNN x16 (its algorithms transform the rounded
// operands) plus one rounding of the output to the 16-bit type (the legacy API writes x's type;
// docs/cuda.md). The hand-written paths get the plain bound. Then TF32 on vs off, and GradScaler
// stepping CUDA parameters.
//
// With -DDL_TEST_FAKE_GPU the "GPU" is the CPU: the bfloat16 cases run CPU against CPU; float16 has
// no CPU kernel, so its cases skip there.
#include <cmath>
#include <limits>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "autocast_cases.h"
#include "cuda_test_util.h"
#include "nn/optim/grad_scaler.h"
#include "nn/optim/sgd.h"
#include "tensor/autocast.h"
#include "tensor/cpu/gemm_bf16.h"

using namespace dl;
using dl::test::to_cpu;
using dl::test::to_gpu;

namespace {

// float32 -> float16 -> float, round to nearest even; overflow to +-inf, subnormals kept.
float round_fp16(float x) {
  if (!std::isfinite(x) || x == 0.0f) return x;
  const double a = std::fabs(static_cast<double>(x));
  const int e = std::max(std::ilogb(a), -14);      // float16: exponents >= -14, 10 fraction bits
  const double q = std::ldexp(1.0, e - 10);          // the spacing at a
  const double r = std::nearbyint(a / q) * q;        // ties to even (default rounding mode)
  return static_cast<float>(std::copysign(r > 65504.0 ? std::numeric_limits<double>::infinity() : r, x));
}

// float32 -> the 16-bit type -> float64, elementwise (what the kernels multiply).
Tensor rounded64(const Tensor& t, DType to) {
  Tensor f = to_cpu(t.detach()).to(DType::Float32).contiguous();
  std::vector<float> v = f.to_vector<float>();
  for (float& x : v) x = to == DType::BFloat16 ? cpu::bf16_to_float(cpu::float_to_bf16(x)) : round_fp16(x);
  return from_vector(v, f.sizes()).to(DType::Float64);
}

// unit roundoff of the 16-bit type (8 or 11 significant bits)
double unit_roundoff(DType t) { return t == DType::BFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11); }

Tensor f32(const Shape& s, uint64_t seed) { return test::random_input(s, seed, -1.0, 1.0, false).to(DType::Float32); }

Tensor leaf(const Tensor& t) {
  Tensor c = t.detach().clone();
  c.requires_grad_(true);
  return c;
}

// |actual - expected| <= (slack * K * 2^-24 + out_round) * bound + 1e-30, elementwise. out_round: one
// rounding of the result before it is widened (cuDNN), bounded through |result| <= bound.
void check_within(const Tensor& actual, const Tensor& expected, const Tensor& bound, int64_t K, double slack,
                  double out_round, const char* what) {
  INFO(what);
  Tensor exp64 = to_cpu(expected.detach()).to(DType::Float64);
  Tensor err = (to_cpu(actual.detach()).to(DType::Float64) - exp64).abs();
  Tensor allowed =
      to_cpu(bound.detach()).to(DType::Float64) * (slack * static_cast<double>(K) * std::ldexp(1.0, -24) + out_round) +
      1e-30;
  const double worst = (err - allowed).max().item<double>();
  INFO("worst excess over the allowance: " << worst << ", largest error " << err.max().item<double>());
  CHECK(worst <= 0.0);
}

struct Slack {
  double sums = 1;       // times K * 2^-24 * bound
  double out_round = 0;  // times the bound (one rounding of the result)
};

// The path the current backends take for `family`, and its allowance.
Slack slack_for(cuda::OpFamily family, DType low) {
#ifdef DL_TEST_FAKE_GPU
  (void)family;
  (void)low;
  return {};
#else
  if (cuda::get_backend(family) == cuda::Backend::Handwritten) return {};
  if (family == cuda::OpFamily::Gemm) return {4, 0};
  return {16, unit_roundoff(low)};
#endif
}

// y = op(x, w) on the GPU under autocast(low), backward with upstream G; checks y, dx, dw against
// float64 from rounded operands, and (bfloat16) against the CPU's autocast.
template <typename Op>
void check_op(const char* name, DType low, const Tensor& x32, const Tensor& w32, int64_t Kf, int64_t Kx, int64_t Kw,
              Slack slack, Op op) {
  INFO(name);
  INFO("autocast to " << dtype_name(low));
  Tensor x = leaf(to_gpu(x32)), w = leaf(to_gpu(w32));
  Tensor y;
  {
    auto scope = autocast(test::gpu(), low);
    y = op(x, w);
  }
  CHECK(y.dtype() == DType::Float32);
  CHECK(y.device() == test::gpu());
  Tensor G = f32(y.sizes(), 99);
  (y * to_gpu(G)).sum().backward();  // outside the scope: the nodes keep their precision

  Tensor rx = rounded64(x32, low), rw = rounded64(w32, low), rG = rounded64(G, low);
  auto grads = [&](const Tensor& a0, const Tensor& b0, const Tensor& up) {
    Tensor a = leaf(a0), b = leaf(b0);
    (op(a, b) * up).sum().backward();
    return std::make_pair(a.grad(), b.grad());
  };
  Tensor y_ref = op(rx, rw), y_bound = op(rx.abs(), rw.abs());
  auto [dx_ref, dw_ref] = grads(rx, rw, rG);
  Tensor dx_bound = grads(rx, rw.abs(), rG.abs()).first;
  Tensor dw_bound = grads(rx.abs(), rw, rG.abs()).second;
  check_within(y, y_ref, y_bound, Kf, slack.sums, slack.out_round, "forward vs float64");
  check_within(x.grad(), dx_ref, dx_bound, Kx, slack.sums, slack.out_round, "grad input vs float64");
  check_within(w.grad(), dw_ref, dw_bound, Kw, slack.sums, slack.out_round, "grad weight vs float64");

  if (low == DType::BFloat16) {  // the CPU's autocast: the same rounded operands, its own float32 sums
    Tensor xc = leaf(x32), wc = leaf(w32);
    Tensor yc;
    {
      auto scope = autocast(kCPU, DType::BFloat16);
      yc = op(xc, wc);
    }
    (yc * G).sum().backward();
    check_within(y, yc, y_bound, Kf, slack.sums + 1, slack.out_round, "forward vs the CPU's bf16");
    check_within(x.grad(), xc.grad(), dx_bound, Kx, slack.sums + 1, slack.out_round, "grad input vs the CPU's bf16");
    check_within(w.grad(), wc.grad(), dw_bound, Kw, slack.sums + 1, slack.out_round, "grad weight vs the CPU's bf16");
  }
}

void gemm_cases(DType low) {
  for (cuda::Backend be : test::all_backends()) {
    test::AllBackends guard(be);
    CAPTURE(static_cast<int>(be));
    const Slack s = slack_for(cuda::OpFamily::Gemm, low);
    check_op("linear (37, 70) x (45, 70)^T", low, f32({37, 70}, 3), f32({45, 70}, 4), 70, 45, 37, s,
             [](const Tensor& x, const Tensor& w) { return linear(x, w); });
    check_op("batched matmul (3, 17, 40) @ (40, 23) (a broadcast operand)", low, f32({3, 17, 40}, 5),
             f32({40, 23}, 6), 40, 23, 3 * 17, s, [](const Tensor& a, const Tensor& b) { return a.matmul(b); });
    check_op("matmul with transposed operands", low, f32({50, 33}, 7), f32({29, 50}, 8), 50, 29, 33, s,
             [](const Tensor& a, const Tensor& b) { return a.transpose(0, 1).matmul(b.transpose(0, 1)).t(); });
    check_op("batched matmul, both batched (4, 9, 130) @ (4, 130, 12)", low, f32({4, 9, 130}, 9),
             f32({4, 130, 12}, 10), 130, 12, 9, s, [](const Tensor& a, const Tensor& b) { return a.matmul(b); });
  }
}

void conv_cases(DType low) {
  std::vector<test::AutocastConvCase> cases = test::autocast_conv_cases();
  Conv2dParams s1;
  s1.padding = {1, 1};
  cases.push_back({"3x3, 64 channels (tensor-core friendly)", {2, 64, 12, 12}, {64, 64, 3, 3}, s1});
  for (cuda::Backend be : test::all_backends()) {
    test::AllBackends guard(be);
    CAPTURE(static_cast<int>(be));
    const Slack s = slack_for(cuda::OpFamily::Conv, low);
    for (const test::AutocastConvCase& c : cases) {
      const Tensor b32 = f32({c.w[0]}, 11).abs();  // >= 0: the bound op(|x|, |w|) + b bounds |y| too
      auto op = [&](const Tensor& x, const Tensor& w) {
        // the bias is added in float32 after the float32 sums (float64 on the reference side)
        Tensor b = c.bias ? b32.to(x.dtype()).to(x.device()) : Tensor();
        return conv2d(x, w, b, c.p);
      };
      const Shape y = op(f32(c.x, 1), f32(c.w, 2)).sizes();
      const int64_t taps = c.w[2] * c.w[3];
      // + 1 on the forward's K: the bias add's rounding
      check_op(c.name, low, f32(c.x, 1), f32(c.w, 2), c.w[1] * taps + 1, c.w[0] / c.p.groups * taps,
               y[0] * y[2] * y[3], s, op);
    }
  }
}

#ifdef DL_TEST_FAKE_GPU
#define DL_SKIP_FP16_ON_FAKE_GPU() DL_SKIP("fake GPU: the CPU has no float16 autocast")
#else
#define DL_SKIP_FP16_ON_FAKE_GPU() \
  do {                             \
  } while (0)
#endif

}  // namespace

TEST_CASE("CUDA autocast bf16: matmul and linear, forward and gradients, both GEMM backends") {
  DL_SKIP_WITHOUT_CUDA();
  gemm_cases(DType::BFloat16);
}

TEST_CASE("CUDA autocast bf16: conv2d forward and gradients, cuDNN and hand-written") {
  DL_SKIP_WITHOUT_CUDA();
  conv_cases(DType::BFloat16);
}

TEST_CASE("CUDA autocast fp16: matmul and linear against float64 from float16-rounded operands") {
  DL_SKIP_WITHOUT_CUDA();
  DL_SKIP_FP16_ON_FAKE_GPU();
  gemm_cases(DType::Float16);
}

TEST_CASE("CUDA autocast fp16: conv2d against float64 from float16-rounded operands") {
  DL_SKIP_WITHOUT_CUDA();
  DL_SKIP_FP16_ON_FAKE_GPU();
  conv_cases(DType::Float16);
}

TEST_CASE("the float16 reference rounding of these tests (host only, runs without a GPU)") {
  CHECK(round_fp16(65519.0f) == 65504.0f);
  CHECK(std::isinf(round_fp16(65520.0f)));
  CHECK(round_fp16(-65520.0f) == -std::numeric_limits<float>::infinity());
  CHECK(round_fp16(std::ldexp(1.0f, -24)) == std::ldexp(1.0f, -24));  // the smallest subnormal
  CHECK(round_fp16(std::ldexp(1.0f, -26)) == 0.0f);
  CHECK(round_fp16(1.0f + std::ldexp(1.0f, -11)) == 1.0f);                           // a tie: to even
  CHECK(round_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 1.0f + std::ldexp(1.0f, -9));  // a tie: to even
  CHECK(std::isnan(round_fp16(NAN)));
#if defined(__FLT16_MAX__)
  // against the compiler's own float32 -> _Float16 conversion (IEEE round to nearest even)
  Generator g(5);
  std::vector<float> v = (rand({20000}, DType::Float32, &g) * 2.0 - 1.0).to_vector<float>();
  int64_t mismatches = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const float x = std::ldexp(v[i], static_cast<int>(i % 48) - 30);  // 2^-30 .. 2^17: subnormals to overflow
    const float want = static_cast<float>(static_cast<_Float16>(x));
    const float got = round_fp16(x);
    if (!(got == want || (std::isnan(got) && std::isnan(want)))) ++mismatches;
  }
  CHECK(mismatches == 0);
#endif
}

TEST_CASE("CUDA autocast fp16: operands beyond float16's range become inf, float32 outputs otherwise") {
  DL_SKIP_WITHOUT_CUDA();
  DL_SKIP_FP16_ON_FAKE_GPU();
  for (cuda::Backend be : test::all_backends()) {
    test::AllBackends guard(be);
    Tensor a = from_vector<float>({1e5f, 1.f, 1.f, 1.f}, {2, 2}), b = from_vector<float>({1.f, 0.f, 0.f, 1.f}, {2, 2});
    auto scope = autocast(test::gpu(), DType::Float16);
    std::vector<float> y = to_cpu(to_gpu(a).matmul(to_gpu(b))).to_vector<float>();
    CHECK(std::isinf(y[0]));
    CHECK(y[3] == 1.0f);
    // a sum above float16's range stays finite: the output is float32
    Tensor big = full({1, 64}, 60000.0), ones64 = full({64, 1}, 1.0);
    CHECK(to_cpu(to_gpu(big).matmul(to_gpu(ones64))).item<float>() == 64 * 60000.0f);
  }
}

TEST_CASE("CUDA autocast: float64 is untouched, and a bad autocast dtype is refused") {
  DL_SKIP_WITHOUT_CUDA();
  Tensor a = test::random_input({6, 7}, 1, -1, 1, false), b = test::random_input({7, 5}, 2, -1, 1, false);
  Tensor plain = to_cpu(to_gpu(a).matmul(to_gpu(b)));
  {
    auto scope = autocast(test::gpu(), DType::BFloat16);
    CHECK_GPU_CLOSE(to_gpu(a).matmul(to_gpu(b)), plain, 0, 0);  // float64 operands: not rounded
  }
  test::check_throws_with([] { auto s = autocast(test::gpu(), DType::Int64); }, {"int64"});
}

TEST_CASE("TF32: off matches float32 within its bound, on within TF32's, for matmul and conv2d") {
  DL_SKIP_WITHOUT_CUDA();
  const bool saved = cuda::allow_tf32();
  test::AllBackends guard(cuda::Backend::Library);
  Tensor a = f32({96, 300}, 21), b = f32({300, 80}, 22);
  Tensor x = f32({2, 32, 10, 10}, 23), w = f32({48, 32, 3, 3}, 24);
  Conv2dParams p;
  p.padding = {1, 1};
  Tensor a64 = a.to(DType::Float64), b64 = b.to(DType::Float64), x64 = x.to(DType::Float64), w64 = w.to(DType::Float64);
  Tensor mm_ref = a64.matmul(b64), mm_bound = a64.abs().matmul(b64.abs());
  Tensor cv_ref = conv2d(x64, w64, Tensor(), p), cv_bound = conv2d(x64.abs(), w64.abs(), Tensor(), p);
  for (bool tf32 : {false, true}) {
    CAPTURE(tf32);
    cuda::set_allow_tf32(tf32);
    Tensor mm = to_gpu(a).matmul(to_gpu(b));
    Tensor cv = conv2d(to_gpu(x), to_gpu(w), Tensor(), p);
    // TF32 rounds both operands to 10-bit mantissas (2 * 2^-11 per product); off: float32 sums only
    // (x16 for cuDNN's Winograd/FFT transforms)
    const double per_product = tf32 ? std::ldexp(1.0, -10) : 0.0;
    check_within(mm, mm_ref, mm_bound, 300, 4 + per_product * std::ldexp(1.0, 24) / 300, 0, "matmul");
    check_within(cv, cv_ref, cv_bound, 32 * 9, 16 + per_product * std::ldexp(1.0, 24) / (32 * 9), 0, "conv2d");
  }
  cuda::set_allow_tf32(saved);
}

TEST_CASE("GradScaler on CUDA parameters: unscales exactly, skips an overflowed step, backs off") {
  DL_SKIP_WITHOUT_CUDA();
  Tensor w = to_gpu(from_vector<float>({0.5f, -1.0f, 2.0f}, {3}));
  w.requires_grad_(true);
  optim::SGD opt({w}, {.lr = 0.5});
  optim::GradScaler scaler({.init_scale = 1024.0});
  Tensor xg = to_gpu(from_vector<float>({1.f, 2.f, -4.f}, {3}));
  opt.zero_grad();
  scaler.scale((w * xg).sum()).backward();
  CHECK(to_cpu(w.grad()).to_vector<float>() == std::vector<float>{1024.f, 2048.f, -4096.f});
  CHECK(scaler.step(opt));
  scaler.update();
  CHECK(to_cpu(w.detach()).to_vector<float>() == std::vector<float>{0.0f, -2.0f, 4.0f});
  opt.zero_grad();
  scaler.scale((w * xg).sum()).backward();
  w.grad().fill_(std::numeric_limits<double>::infinity());
  CHECK_FALSE(scaler.step(opt));
  scaler.update();
  CHECK(scaler.get_scale() == 512.0);
  CHECK(to_cpu(w.detach()).to_vector<float>() == std::vector<float>{0.0f, -2.0f, 4.0f});
}
