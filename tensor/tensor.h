#pragma once
// Tensor: a view (sizes, strides, offset) onto ref-counted Storage, plus autograd metadata.
//
// Layering: this header declares the whole Tensor class. Its core (metadata, storage, element
// access, raw views, factories) is defined in dl_tensor (tensor/tensor.cpp). Its differentiable
// methods (add, matmul, view, ...) are defined in dl_autograd (autograd/tensor_methods.cpp),
// which records the graph and calls the raw kernels of tensor/ops.h, the way PyTorch's autograd
// layer wraps ATen. Code in tensor/ never calls a differentiable method.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/generator.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace dl {

namespace autograd {
class Node;
}

class Tensor;
struct TensorImpl;

// Autograd state of one tensor. Leaves that require grad get an AccumulateGrad node on demand.
struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;                 // accumulated gradient (leaves)
  std::shared_ptr<autograd::Node> grad_fn;           // the node that produced this tensor
  uint32_t output_nr = 0;                            // which output of grad_fn
  std::weak_ptr<autograd::Node> grad_accumulator;    // leaves only
  std::string name;                                  // optional, used in error messages
};

struct TensorImpl {
  StoragePtr storage;
  Shape sizes;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  AutogradMeta autograd;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata --------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& sizes() const { return impl().sizes; }
  const Shape& shape() const { return impl().sizes; }
  int64_t size(int64_t dim) const;
  const Shape& strides() const { return impl().strides; }
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().sizes.size()); }
  int64_t numel() const;
  int64_t storage_offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_contiguous() const;
  int64_t element_size() const { return dtype_size(dtype()); }
  const StoragePtr& storage() const { return impl().storage; }
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  std::string str() const;  // PyTorch-style repr with truncated values

  // Pointer to the first element (offset applied). T must match dtype().
  template <typename T> T* data_ptr() const;
  void* raw_data() const;  // untyped, offset applied
  // The value of a one-element tensor (any dtype, converted; CPU or copied from the device).
  template <typename T> T item() const;
  // Element access by index, CPU only, for tests and small code: t.at<float>({1, 2}).
  template <typename T> T at(const std::vector<int64_t>& index) const;
  // Copies out a contiguous std::vector (converted to T).
  template <typename T> std::vector<T> to_vector() const;

  // ---- autograd --------------------------------------------------------------------------
  bool requires_grad() const { return impl().autograd.requires_grad; }
  Tensor& requires_grad_(bool on = true);  // leaves only
  Tensor grad() const;                     // undefined when none yet
  void set_grad(const Tensor& g);
  void zero_grad();                        // drops the gradient (sets it undefined)
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().autograd.grad_fn; }
  bool is_leaf() const { return impl().autograd.grad_fn == nullptr; }
  // Back-propagates from this tensor: a scalar, or any shape with `gradient` given.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // shares storage, no history

  // ---- views (differentiable) -----------------------------------------------------------
  Tensor view(const Shape& shape) const;     // needs compatible strides; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // view when possible, else a copy
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // 2-D transpose
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;  // -1 keeps a size
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // ---- elementwise (differentiable) -----------------------------------------------------
  Tensor neg() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor silu() const;  // x * sigmoid(x)
  Tensor leaky_relu(double negative_slope = 0.01) const;
  Tensor gelu(const std::string& approximate = "none") const;  // "none" (erf) or "tanh", as PyTorch
  Tensor hardswish() const;  // x * relu6(x + 3) / 6
  // min(max(x, min), max); +-infinity leaves a side open. Gradient: g where min <= x <= max.
  Tensor clamp(double min, double max) const;
  Tensor pow(double exponent) const;
  Tensor add(const Tensor& o) const;
  Tensor sub(const Tensor& o) const;
  Tensor mul(const Tensor& o) const;
  Tensor div(const Tensor& o) const;
  Tensor maximum(const Tensor& o) const;
  Tensor add(double s) const;
  Tensor sub(double s) const;
  Tensor mul(double s) const;
  Tensor div(double s) const;
  // comparisons give uint8 tensors (1 true, 0 false) and have no gradient
  Tensor eq(const Tensor& o) const;
  Tensor ne(const Tensor& o) const;
  Tensor lt(const Tensor& o) const;
  Tensor le(const Tensor& o) const;
  Tensor gt(const Tensor& o) const;
  Tensor ge(const Tensor& o) const;
  Tensor eq(double s) const;
  Tensor lt(double s) const;
  Tensor gt(double s) const;

  // ---- reductions (differentiable except argmax) ------------------------------------------
  Tensor sum() const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;  // values; see argmax for indices
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor var(const std::vector<int64_t>& dims, bool unbiased = true, bool keepdim = false) const;

  // ---- linear algebra and friends (differentiable) --------------------------------------
  Tensor matmul(const Tensor& o) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor gather(int64_t dim, const Tensor& index) const;
  Tensor index_select(int64_t dim, const Tensor& index) const;

  // ---- in place (not recorded; refused on tensors that need grad while grad mode is on) ----
  Tensor& fill_(double value);
  Tensor& zero_();
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype, crosses devices
  Tensor& add_(const Tensor& o, double alpha = 1.0);
  Tensor& mul_(double s);

  // ---- math helpers for backward closures and optimizer steps --------------------------------
  // (bodies in autograd/functions/tensor_ops.cpp, with the methods above)
  Tensor sign() const;                           // -1, 0 or 1; no gradient (zero almost everywhere)
  Tensor sum_to_size(const Shape& shape) const;  // sums the dims a broadcast added or expanded away
  // In place like add_/mul_ above: into this tensor's own memory (o broadcast to its shape), so
  // `v.mul_(beta).add_(g, 1 - beta)` updates optimizer state where it lies. One temporary remains:
  // add_(o, alpha) with alpha != 1 scales a copy of o first (there is no fused axpy kernel; the CPU
  // optimizers run their fused loops instead).
  Tensor& add_(double s);
  Tensor& mul_(const Tensor& o);
  Tensor& div_(double s);
  Tensor& maximum_(const Tensor& o);

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// ---- operators -----------------------------------------------------------------------------
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);

// ---- creation (tensor/tensor.cpp) ----------------------------------------------------------
struct TensorOptions {
  DType dtype = DType::Float32;
  Device device = kCPU;
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}  // NOLINT: lets `zeros({2}, DType::Float64)` read well
  TensorOptions(DType d, Device dev, bool rg = false) : dtype(d), device(dev), requires_grad(rg) {}
};

Tensor empty(const Shape& shape, TensorOptions opt = {});
Tensor zeros(const Shape& shape, TensorOptions opt = {});
Tensor ones(const Shape& shape, TensorOptions opt = {});
Tensor full(const Shape& shape, double value, TensorOptions opt = {});
Tensor arange(double start, double end, double step = 1.0, TensorOptions opt = {});
Tensor arange(int64_t end, TensorOptions opt = {DType::Int64});
Tensor rand(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);   // U[0,1)
Tensor randn(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);  // N(0,1)
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor scalar_tensor(double value, DType dtype = DType::Float32);  // 0-d
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opt = {dtype_of<T>::value});

// ---- free functions (differentiable; autograd/tensor_methods.cpp) --------------------------
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor matmul(const Tensor& a, const Tensor& b);

// Largest |a - b| over all elements, with the flat index where it occurs (tests use it).
struct MaxDiff {
  double abs_diff;
  double rel_diff;  // |a-b| / max(|b|, tiny) at the worst abs_diff element
  int64_t index;
  double a, b;
};
MaxDiff max_difference(const Tensor& a, const Tensor& b);
// True when |a - b| <= atol + rtol * |b| everywhere and shapes match.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace dl

#include <fmt/ostream.h>
#include <ostream>
namespace dl {
std::ostream& operator<<(std::ostream& os, const Tensor& t);
}
template <> struct fmt::formatter<dl::Tensor> : fmt::ostream_formatter {};
