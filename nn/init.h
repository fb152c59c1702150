#pragma once
// Parameter initialisation, as torch.nn.init: each fills a tensor in place (under no-grad, any
// device and floating dtype) from `gen`, or the default generator when null, and returns it.
// Values are drawn in double and rounded to the tensor's dtype. The generator is the framework's
// own (not PyTorch's), so the distributions match PyTorch's, not the individual numbers.
#include <optional>
#include <string>
#include <utility>

#include "tensor/tensor.h"

namespace dl::nn::init {

enum class FanMode { FanIn, FanOut };
// "linear", "conv1d/2d/3d", "conv_transpose1d/2d/3d", "sigmoid" -> 1; "tanh" -> 5/3;
// "relu" -> sqrt(2); "leaky_relu" -> sqrt(2 / (1 + a^2)) (a defaults to 0.01); "selu" -> 3/4.
double calculate_gain(const std::string& nonlinearity, std::optional<double> param = std::nullopt);
// (fan_in, fan_out) = (size(1), size(0)) times the receptive field (product of dims 2..); needs
// a tensor of at least 2 dims.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor uniform_(const Tensor& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(const Tensor& t, double value);
Tensor zeros_(const Tensor& t);
Tensor ones_(const Tensor& t);

// U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).
Tensor kaiming_uniform_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                         const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// N(0, std^2) with std = gain / sqrt(fan).
Tensor kaiming_normal_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace dl::nn::init
