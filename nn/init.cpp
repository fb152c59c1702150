#include "nn/init.h"

#include <cmath>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace dl::nn::init {

namespace {
void check_floating(const Tensor& t, const char* fn) {
  if (!t.defined()) fail("init::{}: the tensor is undefined", fn);
  check_computable(t.dtype(), fn);
  if (!is_floating(t.dtype())) fail("init::{}: expected a float32 or float64 tensor, got {}", fn, dtype_name(t.dtype()));
}

// Fills t with sample(gen) drawn in double on the CPU, then copies (rounding, moving) into t.
template <typename Sample>
Tensor fill_random(const Tensor& t, Generator* gen, Sample sample) {
  Generator& g = gen ? *gen : default_generator();
  Tensor values = empty(t.sizes(), DType::Float64);
  double* p = values.data_ptr<double>();
  for (int64_t i = 0, n = values.numel(); i < n; ++i) p[i] = sample(g);
  NoGradGuard no_grad;
  ops::copy_(t, values);
  return t;
}

double fan(const Tensor& t, FanMode mode) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return static_cast<double>(mode == FanMode::FanIn ? fan_in : fan_out);
}
}  // namespace

double calculate_gain(const std::string& nl, std::optional<double> param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "conv_transpose1d" ||
      nl == "conv_transpose2d" || nl == "conv_transpose3d" || nl == "sigmoid")
    return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") {
    double slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  if (nl == "selu") return 3.0 / 4.0;
  fail("init::calculate_gain: unsupported nonlinearity '{}' (expected linear, conv1d/2d/3d, "
       "conv_transpose1d/2d/3d, sigmoid, tanh, relu, leaky_relu or selu)",
       nl);
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  if (!t.defined()) fail("init: fan in and fan out of an undefined tensor");
  if (t.dim() < 2)
    fail("init: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions (shape {})",
         shape_str(t.sizes()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor uniform_(const Tensor& t, double a, double b, Generator* gen) {
  check_floating(t, "uniform_");
  if (!(a <= b) || !std::isfinite(a) || !std::isfinite(b))
    fail("init::uniform_: expected finite bounds with a <= b, got a={} b={}", a, b);
  return fill_random(t, gen, [a, b](Generator& g) { return a + (b - a) * g.uniform(); });
}

Tensor normal_(const Tensor& t, double mean, double std, Generator* gen) {
  check_floating(t, "normal_");
  if (!(std >= 0) || !std::isfinite(std) || !std::isfinite(mean))
    fail("init::normal_: expected a finite mean and std >= 0, got mean={} std={}", mean, std);
  return fill_random(t, gen, [mean, std](Generator& g) { return mean + std * g.normal(); });
}

Tensor constant_(const Tensor& t, double value) {
  if (!t.defined()) fail("init::constant_: the tensor is undefined");
  NoGradGuard no_grad;
  ops::fill_(t, value);
  return t;
}
Tensor zeros_(const Tensor& t) { return constant_(t, 0.0); }
Tensor ones_(const Tensor& t) { return constant_(t, 1.0); }

Tensor kaiming_uniform_(const Tensor& t, double a, FanMode mode, const std::string& nonlinearity, Generator* gen) {
  check_floating(t, "kaiming_uniform_");
  if (t.numel() == 0) return t;  // PyTorch warns and leaves an empty tensor alone
  double std = calculate_gain(nonlinearity, a) / std::sqrt(fan(t, mode));
  double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor kaiming_normal_(const Tensor& t, double a, FanMode mode, const std::string& nonlinearity, Generator* gen) {
  check_floating(t, "kaiming_normal_");
  if (t.numel() == 0) return t;
  double std = calculate_gain(nonlinearity, a) / std::sqrt(fan(t, mode));
  return normal_(t, 0.0, std, gen);
}

Tensor xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_uniform_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  if (t.numel() == 0) return t;
  double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor xavier_normal_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_normal_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  if (t.numel() == 0) return t;
  double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(t, 0.0, std, gen);
}

}  // namespace dl::nn::init
