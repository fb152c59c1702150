#pragma once
// The standard layers, each a Module with PyTorch's parameter names, shapes, default
// initialisation (reset_parameters) and repr. Forward passes call autograd/functional.h.
#include <array>
#include <initializer_list>
#include <memory>
#include <optional>
#include <type_traits>

#include "autograd/functional.h"
#include "nn/module.h"

namespace dl::nn {

// A (height, width) pair that also accepts one number for both: `kernel_size = 3` or `{3, 5}`.
struct IntPair {
  int64_t h = 0, w = 0;
  IntPair(int64_t v) : h(v), w(v) {}  // NOLINT: implicit, as PyTorch's int-or-tuple arguments
  IntPair(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  std::array<int64_t, 2> arr() const { return {h, w}; }
  bool operator==(const IntPair&) const = default;
  std::string str() const;  // "(3, 3)"
};

// ---- Linear -------------------------------------------------------------------------------------
// y = x W^T + b; weight (out, in), bias (out). Default init as torch: kaiming_uniform_(a=sqrt(5))
// for the weight, U(-1/sqrt(in), 1/sqrt(in)) for the bias.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when bias=false
};

// ---- Conv2d -------------------------------------------------------------------------------------
// Use with designated initialisers: Conv2d({.in_channels = 3, .out_channels = 8, .kernel_size = 3,
// .padding = 1}).
struct Conv2dConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  IntPair kernel_size = 1;
  IntPair stride = 1;
  IntPair padding = 0;
  IntPair dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// weight (out, in/groups, kh, kw), bias (out). Default init as torch's _ConvNd.reset_parameters.
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dConfig& cfg);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);
  Conv2dParams params() const;  // cfg's stride, padding, dilation and groups, for the ops

  Conv2dConfig cfg;
  Tensor weight, bias;
};

// ---- BatchNorm2d --------------------------------------------------------------------------------
// Parameters weight (1s) and bias (0s) when affine; buffers running_mean (0s), running_var (1s) and
// num_batches_tracked (int64 0-d) when track_running_stats. In training, num_batches_tracked grows
// by one per forward and the running statistics move by `momentum` (unbiased variance); a
// momentum of nullopt gives the cumulative average 1/num_batches_tracked, as in PyTorch.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, bool track_running_stats = true);
  Tensor forward(const Tensor& x) override;
  // (forward(x) + residual).relu() in one fused pass (autograd/functional.h batch_norm_relu), the
  // residual optional: for a BatchNorm2d that a ReLU follows, as in ResNet's blocks (where the
  // shortcut is added in between) and the scratch CNN.
  Tensor forward_relu(const Tensor& x, const Tensor& residual = Tensor());
  // This batch norm of conv(x), + residual, then ReLU when relu (Conv2d then BatchNorm2d is how ResNet and
  // the scratch CNN are built). For inference (eval mode with running statistics, nothing that records a
  // graph: grad mode off or no input or parameter requiring grad, no tracer; exactly these two types; one
  // dtype throughout) the normalisation is folded into the convolution's output write:
  // conv(x) * s + (bias - mean * s) with s = weight / sqrt(var + eps), computed per channel at each call
  // (nothing cached that a changed parameter could make stale), residual and ReLU in the same pass
  // (ops::conv2d_forward_affine), as PyTorch's optimize_for_inference / oneDNN's post-ops do. The results
  // differ from the separate passes by the fold's float rounding: the batch-norm kernel centres (x - mean)
  // before scaling, the fold does not, so where |mean| is large against the standard deviation float32 loses
  // more than the last bits. Otherwise it is exactly forward_relu(conv(x), residual), or forward(conv(x)) +
  // residual without relu.
  Tensor forward_conv(Conv2d& conv, const Tensor& x, bool relu, const Tensor& residual = Tensor());
  std::string extra_repr() const override;
  void reset_running_stats();
  void reset_parameters();

  int64_t num_features;
  double eps;
  std::optional<double> momentum;
  bool affine, track_running_stats;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  Tensor forward_impl(const Tensor& x, bool relu, const Tensor& residual);
};

// ---- activations, pooling, reshaping --------------------------------------------------------------
class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return x.relu(); }
};

class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Module("LeakyReLU"), negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override { return x.leaky_relu(negative_slope); }
  double negative_slope;
};

class GELU : public Module {
 public:
  explicit GELU(std::string approximate = "none") : Module("GELU"), approximate(std::move(approximate)) {}
  Tensor forward(const Tensor& x) override { return x.gelu(approximate); }
  std::string approximate;  // "none" or "tanh"
};

class Hardswish : public Module {
 public:
  Hardswish() : Module("Hardswish") {}
  Tensor forward(const Tensor& x) override { return x.hardswish(); }
};

class SiLU : public Module {
 public:
  SiLU() : Module("SiLU") {}
  Tensor forward(const Tensor& x) override { return x.silu(); }
};

class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

// stride defaults to the kernel size, as in PyTorch.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(IntPair kernel_size, std::optional<IntPair> stride = std::nullopt, IntPair padding = 0,
                     bool ceil_mode = false);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  Pool2dParams options;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(IntPair kernel_size, std::optional<IntPair> stride = std::nullopt, IntPair padding = 0,
                     bool ceil_mode = false, bool count_include_pad = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  Pool2dParams options;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(IntPair output_size);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  IntPair output_size;
};

// Zeroes elements with probability p in training (scaling the rest by 1/(1-p)); identity in eval.
// Draws from `gen`, or from the default generator when null, so dl::manual_seed fixes the mask.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  double p;
  Generator* generator;
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim, end_dim); }
  std::string extra_repr() const override;
  int64_t start_dim, end_dim;
};

// ---- Sequential ------------------------------------------------------------------------------------
// Runs its children in order; they are named "0", "1", ... as in PyTorch.
//
// Fusion is the framework's business, not a model's: a Conv2d directly followed by a BatchNorm2d (and a
// ReLU) runs as BatchNorm2d::forward_conv, which folds the batch norm and ReLU into the convolution for
// inference (and is the pairs below otherwise); a BatchNorm2d directly followed by a ReLU
// (exactly those two types; a subclass may override forward) runs as one fused pass,
// BatchNorm2d::forward_relu: the same numbers as running the two in turn (the same kernel
// arithmetic; see tests/unit/fusion_test.cpp), one pass over memory and one activation tensor
// fewer, in forward and in backward. The pairs are found from the children's types at every
// forward (a few type comparisons), so a model that is edited, a module inserted between the two
// or one of them replaced, is never run with a stale plan: it simply is not fused there. The
// modules, their names and state_dict keys are untouched. `fusion = false` (or
// nn::set_fusion(model, false)) runs every module on its own.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);
  // std::make_shared<Sequential>(std::make_shared<Linear>(4, 8), std::make_shared<ReLU>())
  template <typename... Ms>
    requires(sizeof...(Ms) >= 1 && (std::is_base_of_v<Module, Ms> && ...))
  explicit Sequential(std::shared_ptr<Ms>... modules) : Module("Sequential") {
    (push_back(std::move(modules)), ...);
  }

  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    register_module(std::to_string(modules_.size()), m);
    modules_.push_back(m);
    return m;
  }
  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // Negative indices count from the end, as in Python; out of range throws dl::Error.
  std::shared_ptr<Module> operator[](int64_t i) const;
  template <typename M> std::shared_ptr<M> at(int64_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    if (!m) fail("Sequential[{}] is a {}, not the requested type", i, (*this)[i]->name());
    return m;
  }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }
  Tensor forward(const Tensor& x) override;

  bool fusion = true;  // run Conv2d + BatchNorm2d (+ ReLU) and BatchNorm2d + ReLU fused (see above)

 protected:
  void child_replaced(const Module* old, const std::shared_ptr<Module>& m) override;

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

// Sets `fusion` on every Sequential in the tree below `root` (and on root itself when it is one):
// off runs each module on its own, e.g. to compare against the fused path.
void set_fusion(Module& root, bool on);

}  // namespace dl::nn
