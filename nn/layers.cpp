#include "nn/layers.h"

#include <cmath>
#include <typeinfo>

#include "autograd/node.h"
#include "nn/init.h"
#include "tensor/autocast.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"

namespace dl::nn {

namespace {
// PyTorch prints pooling sizes as it was given them; we print one number when both sides agree.
std::string int_or_pair(const IntPair& p) { return p.h == p.w ? std::to_string(p.h) : p.str(); }

const char* py_bool(bool b) { return b ? "True" : "False"; }

// Linear/Conv default init (torch's reset_parameters): kaiming_uniform_(a=sqrt(5)) for the weight,
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
void reset_weight_and_bias(const Tensor& weight, const Tensor& bias, Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn, "leaky_relu", gen);
  if (bias.defined()) {
    auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(weight);
    double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}
}  // namespace

std::string IntPair::str() const { return fmt::format("({}, {})", h, w); }

// ---- Linear ---------------------------------------------------------------------------------------

Linear::Linear(int64_t in, int64_t out, bool with_bias) : Module("Linear"), in_features(in), out_features(out) {
  if (in < 0 || out < 0) fail("Linear: in_features and out_features must be >= 0, got {} and {}", in, out);
  weight = register_parameter("weight", empty({out, in}));
  if (with_bias) bias = register_parameter("bias", empty({out}));
  reset_parameters();
}

void Linear::reset_parameters(Generator* gen) { reset_weight_and_bias(weight, bias, gen); }

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() < 1 || x.size(-1) != in_features)
    fail("{}: expected an input whose last dim is {}, got shape {}", repr(), in_features, shape_str(x.sizes()));
  if (x.dim() == 2) return linear(x, weight, bias);
  // (*, in) -> (N, in) -> (N, out) -> (*, out), as torch.nn.Linear accepts any leading dims
  Shape out_shape = x.sizes();
  out_shape.back() = out_features;
  return linear(x.reshape({-1, in_features}), weight, bias).reshape(out_shape);
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_features, out_features, py_bool(bias.defined()));
}

// ---- Conv2d ---------------------------------------------------------------------------------------

Conv2d::Conv2d(const Conv2dConfig& c) : Module("Conv2d"), cfg(c) {
  if (c.in_channels <= 0 || c.out_channels <= 0)
    fail("Conv2d: in_channels and out_channels must be positive, got {} and {}", c.in_channels, c.out_channels);
  if (c.groups <= 0) fail("Conv2d: groups must be positive, got {}", c.groups);
  if (c.in_channels % c.groups != 0) fail("Conv2d: in_channels ({}) must be divisible by groups ({})", c.in_channels, c.groups);
  if (c.out_channels % c.groups != 0)
    fail("Conv2d: out_channels ({}) must be divisible by groups ({})", c.out_channels, c.groups);
  if (c.kernel_size.h <= 0 || c.kernel_size.w <= 0) fail("Conv2d: kernel_size must be positive, got {}", c.kernel_size.str());
  if (c.stride.h <= 0 || c.stride.w <= 0) fail("Conv2d: stride must be positive, got {}", c.stride.str());
  if (c.padding.h < 0 || c.padding.w < 0) fail("Conv2d: padding must be >= 0, got {}", c.padding.str());
  if (c.dilation.h <= 0 || c.dilation.w <= 0) fail("Conv2d: dilation must be positive, got {}", c.dilation.str());
  weight = register_parameter("weight", empty({c.out_channels, c.in_channels / c.groups, c.kernel_size.h, c.kernel_size.w}));
  if (c.bias) bias = register_parameter("bias", empty({c.out_channels}));
  reset_parameters();
}

void Conv2d::reset_parameters(Generator* gen) { reset_weight_and_bias(weight, bias, gen); }

Tensor Conv2d::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != cfg.in_channels)
    fail("{}: expected an input of shape (N, {}, H, W), got {}", repr(), cfg.in_channels, shape_str(x.sizes()));
  return conv2d(x, weight, bias, params());
}

Conv2dParams Conv2d::params() const {
  Conv2dParams opt;
  opt.stride = cfg.stride.arr();
  opt.padding = cfg.padding.arr();
  opt.dilation = cfg.dilation.arr();
  opt.groups = cfg.groups;
  return opt;
}

std::string Conv2d::extra_repr() const {
  std::string s = fmt::format("{}, {}, kernel_size={}, stride={}", cfg.in_channels, cfg.out_channels,
                              cfg.kernel_size.str(), cfg.stride.str());
  if (cfg.padding != IntPair(0)) s += ", padding=" + cfg.padding.str();
  if (cfg.dilation != IntPair(1)) s += ", dilation=" + cfg.dilation.str();
  if (cfg.groups != 1) s += fmt::format(", groups={}", cfg.groups);
  if (!bias.defined()) s += ", bias=False";
  return s;
}

// ---- BatchNorm2d ----------------------------------------------------------------------------------

BatchNorm2d::BatchNorm2d(int64_t n, double eps_, std::optional<double> momentum_, bool affine_, bool track)
    : Module("BatchNorm2d"), num_features(n), eps(eps_), momentum(momentum_), affine(affine_), track_running_stats(track) {
  if (n <= 0) fail("BatchNorm2d: num_features must be positive, got {}", n);
  if (!(eps_ > 0)) fail("BatchNorm2d: eps must be positive, got {}", eps_);
  if (momentum_ && !(*momentum_ >= 0 && *momentum_ <= 1)) fail("BatchNorm2d: momentum must be in [0, 1], got {}", *momentum_);
  if (affine) {
    weight = register_parameter("weight", ones({n}));
    bias = register_parameter("bias", zeros({n}));
  }
  if (track) {
    running_mean = register_buffer("running_mean", zeros({n}));
    running_var = register_buffer("running_var", ones({n}));
    num_batches_tracked = register_buffer("num_batches_tracked", scalar_tensor(0, DType::Int64));
  }
}

void BatchNorm2d::reset_running_stats() {
  if (!track_running_stats) return;
  NoGradGuard no_grad;
  ops::fill_(running_mean, 0.0);
  ops::fill_(running_var, 1.0);
  ops::fill_(num_batches_tracked, 0.0);
}

void BatchNorm2d::reset_parameters() {
  reset_running_stats();
  if (affine) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNorm2d::forward(const Tensor& x) { return forward_impl(x, false, Tensor()); }

Tensor BatchNorm2d::forward_relu(const Tensor& x, const Tensor& residual) { return forward_impl(x, true, residual); }

Tensor BatchNorm2d::forward_impl(const Tensor& x, bool relu, const Tensor& residual) {
  if (x.dim() != 4) fail("{}: expected a 4-D input (N, C, H, W), got {}-D shape {}", repr(), x.dim(), shape_str(x.sizes()));
  if (x.size(1) != num_features)
    fail("{}: expected {} channels (dim 1), got shape {}", repr(), num_features, shape_str(x.sizes()));
  double factor = momentum.value_or(0.0);
  if (is_training() && track_running_stats) {
    NoGradGuard no_grad;
    ops::copy_(num_batches_tracked, ops::binary_scalar(ops::BinaryOp::Add, num_batches_tracked, 1.0));
    if (!momentum) factor = 1.0 / num_batches_tracked.item<double>();  // cumulative moving average
  }
  // Eval without running statistics normalises with the batch's own, as PyTorch does.
  bool use_batch_stats = is_training() || !running_mean.defined();
  if (relu) return batch_norm_relu(x, running_mean, running_var, weight, bias, use_batch_stats, factor, eps, residual);
  return batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, factor, eps);
}

Tensor BatchNorm2d::forward_conv(Conv2d& conv, const Tensor& x, bool relu, const Tensor& residual) {
  auto same_dtype = [&](const Tensor& t) { return !t.defined() || t.dtype() == x.dtype(); };
  const bool fold = typeid(conv) == typeid(Conv2d) && typeid(*this) == typeid(BatchNorm2d) && !is_training() &&
                    running_mean.defined() && autograd::tracer() == nullptr &&
                    !autograd::needs_graph(x, conv.weight, conv.bias, weight, bias, residual) && x.defined() &&
                    x.dim() == 4 && x.size(1) == conv.cfg.in_channels && conv.cfg.out_channels == num_features &&
                    same_dtype(conv.weight) && same_dtype(conv.bias) && same_dtype(running_mean) &&
                    same_dtype(running_var) && same_dtype(weight) && same_dtype(bias) && same_dtype(residual);
  if (!fold) {
    if (relu) return forward_impl(conv(x), true, residual);
    Tensor y = forward_impl(conv(x), false, Tensor());
    return residual.defined() ? y + residual : y;
  }
  NoGradGuard no_grad;
  Tensor s = 1.0 / (running_var + eps).sqrt();
  if (weight.defined()) s = s * weight;
  Tensor shift = -(running_mean * s);
  if (bias.defined()) shift = shift + bias;
  if (conv.bias.defined()) shift = shift + conv.bias * s;
  Conv2dParams p = conv.params();
  p.gemm_dtype = gemm_dtype_for(x.dtype(), x.device());
  return ops::conv2d_forward_affine(x, conv.weight, s, shift, residual, relu, p);
}

std::string BatchNorm2d::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats={}", num_features, py_float(eps),
                     momentum ? py_float(*momentum) : "None", py_bool(affine), py_bool(track_running_stats));
}

// ---- pooling ----------------------------------------------------------------------------------------

namespace {
Pool2dParams pool_options(const char* layer, IntPair kernel, std::optional<IntPair> stride, IntPair padding,
                           bool ceil_mode, bool count_include_pad) {
  IntPair s = stride.value_or(kernel);
  if (kernel.h <= 0 || kernel.w <= 0) fail("{}: kernel_size must be positive, got {}", layer, kernel.str());
  if (s.h <= 0 || s.w <= 0) fail("{}: stride must be positive, got {}", layer, s.str());
  if (padding.h < 0 || padding.w < 0 || 2 * padding.h > kernel.h || 2 * padding.w > kernel.w)
    fail("{}: padding must be >= 0 and at most half the kernel size, got padding {} for kernel {}", layer,
         padding.str(), kernel.str());
  Pool2dParams o;
  o.kernel = kernel.arr();
  o.stride = s.arr();
  o.padding = padding.arr();
  o.ceil_mode = ceil_mode;
  o.count_include_pad = count_include_pad;
  return o;
}
IntPair pair_of(const std::array<int64_t, 2>& a) { return {a[0], a[1]}; }
}  // namespace

MaxPool2d::MaxPool2d(IntPair kernel, std::optional<IntPair> stride, IntPair padding, bool ceil_mode)
    : Module("MaxPool2d"), options(pool_options("MaxPool2d", kernel, stride, padding, ceil_mode, true)) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  if (x.dim() != 4) fail("{}: expected a 4-D input (N, C, H, W), got shape {}", repr(), shape_str(x.sizes()));
  return max_pool2d(x, options);
}

std::string MaxPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}, dilation=1, ceil_mode={}", int_or_pair(pair_of(options.kernel)),
                     int_or_pair(pair_of(options.stride)), int_or_pair(pair_of(options.padding)), py_bool(options.ceil_mode));
}

AvgPool2d::AvgPool2d(IntPair kernel, std::optional<IntPair> stride, IntPair padding, bool ceil_mode, bool count_include_pad)
    : Module("AvgPool2d"), options(pool_options("AvgPool2d", kernel, stride, padding, ceil_mode, count_include_pad)) {}

Tensor AvgPool2d::forward(const Tensor& x) {
  if (x.dim() != 4) fail("{}: expected a 4-D input (N, C, H, W), got shape {}", repr(), shape_str(x.sizes()));
  return avg_pool2d(x, options);
}

std::string AvgPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}", int_or_pair(pair_of(options.kernel)),
                     int_or_pair(pair_of(options.stride)), int_or_pair(pair_of(options.padding)));
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(IntPair size) : Module("AdaptiveAvgPool2d"), output_size(size) {
  if (size.h <= 0 || size.w <= 0) fail("AdaptiveAvgPool2d: output_size must be positive, got {}", size.str());
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  if (x.dim() != 4) fail("{}: expected a 4-D input (N, C, H, W), got shape {}", repr(), shape_str(x.sizes()));
  return adaptive_avg_pool2d(x, output_size.arr());
}

std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + int_or_pair(output_size); }

// ---- Dropout, Flatten -----------------------------------------------------------------------------

Dropout::Dropout(double p_, Generator* gen) : Module("Dropout"), p(p_), generator(gen) {
  if (!(p_ >= 0 && p_ <= 1)) fail("Dropout: probability has to be between 0 and 1, got {}", p_);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), generator); }

std::string Dropout::extra_repr() const { return fmt::format("p={}, inplace=False", py_float(p)); }

Flatten::Flatten(int64_t start, int64_t end) : Module("Flatten"), start_dim(start), end_dim(end) {}

std::string Flatten::extra_repr() const { return fmt::format("start_dim={}, end_dim={}", start_dim, end_dim); }

// ---- Sequential -----------------------------------------------------------------------------------

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

std::shared_ptr<Module> Sequential::operator[](int64_t i) const {
  auto n = static_cast<int64_t>(modules_.size());
  int64_t j = i < 0 ? i + n : i;
  if (j < 0 || j >= n) fail("Sequential: index {} is out of range for {} modules", i, n);
  return modules_[static_cast<size_t>(j)];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  const size_t n = modules_.size();
  for (size_t i = 0; i < n; ++i) {
    Module& m = *modules_[i];
    // exact types: a subclass may compute something else in its forward
    if (fusion && i + 1 < n && typeid(m) == typeid(Conv2d) && typeid(*modules_[i + 1]) == typeid(BatchNorm2d)) {
      const bool relu = i + 2 < n && typeid(*modules_[i + 2]) == typeid(ReLU);
      y = static_cast<BatchNorm2d&>(*modules_[i + 1]).forward_conv(static_cast<Conv2d&>(m), y, relu);
      i += relu ? 2 : 1;  // the batch norm (and ReLU) ran with the convolution
      continue;
    }
    if (fusion && i + 1 < n && typeid(m) == typeid(BatchNorm2d) && typeid(*modules_[i + 1]) == typeid(ReLU)) {
      y = static_cast<BatchNorm2d&>(m).forward_relu(y);
      ++i;  // the ReLU ran inside the fused pass
      continue;
    }
    y = m(y);
  }
  return y;
}

void Sequential::child_replaced(const Module* old, const std::shared_ptr<Module>& m) {
  for (auto& entry : modules_)
    if (entry.get() == old) entry = m;
}

void set_fusion(Module& root, bool on) {
  if (auto* s = dynamic_cast<Sequential*>(&root)) s->fusion = on;
  for (const auto& [name, m] : root.named_modules())
    if (auto* s = dynamic_cast<Sequential*>(m.get())) s->fusion = on;
}

}  // namespace dl::nn
