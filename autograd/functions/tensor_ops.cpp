// Tensor's differentiable methods: each op's forward (a raw op from tensor/ops.h) next to its
// backward (the closure given to record()). Backward closures run with grad mode off and use
// the same Tensor API. Saved tensors go through save() (detached aliases).
#include <algorithm>
#include <numeric>

#include "autograd/node.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"

namespace dl {

using autograd::NeedsGrad;
using autograd::record;
using autograd::save;
using G = std::vector<Tensor>;
using ops::BinaryOp;
using ops::UnaryOp;

namespace {
void check_inplace(const Tensor& t, const char* op) {
  if (autograd::grad_mode_enabled() && t.requires_grad())
    fail("{}: in-place operation on a tensor that requires grad; wrap it in NoGradGuard "
         "(e.g. for an optimizer step) or use the out-of-place op",
         op);
}
}  // namespace

// ---- autograd accessors ---------------------------------------------------------------------------

Tensor& Tensor::requires_grad_(bool on) {
  if (!is_leaf()) fail("requires_grad_() can only change leaf tensors; use detach() first");
  if (on && !is_floating(dtype())) fail("only floating tensors can require grad, got {}", dtype_name(dtype()));
  impl().autograd.requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& g = impl().autograd.grad;
  return g ? Tensor(g) : Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  if (g.defined() && g.sizes() != sizes())
    fail("set_grad: gradient of shape {} for a tensor of shape {}", shape_str(g.sizes()), shape_str(sizes()));
  impl().autograd.grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() { impl().autograd.grad.reset(); }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::run_backward({*this}, {gradient}, retain_graph);
}

Tensor Tensor::detach() const { return ops::alias(*this); }

// ---- views ----------------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& shape) const {
  Shape in = sizes();
  return record("ViewBackward", ops::view(*this, shape), {*this},
                [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape in = sizes();
  Tensor out = ops::can_view(*this, shape) ? ops::view(*this, shape) : ops::view(ops::clone(*this), shape);
  return record("ReshapeBackward", out, {*this},
                [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim());
  end_dim = wrap_dim(end_dim, dim());
  if (start_dim > end_dim) fail("flatten: start_dim {} comes after end_dim {}", start_dim, end_dim);
  Shape s(sizes().begin(), sizes().begin() + start_dim);
  int64_t n = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) n *= sizes()[d];
  s.push_back(n);
  s.insert(s.end(), sizes().begin() + end_dim + 1, sizes().end());
  return reshape(s);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  Tensor out = ops::permute(*this, dims);
  std::vector<int64_t> inv(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inv[wrap_dim(dims[i], dim())] = static_cast<int64_t>(i);
  return record("PermuteBackward", out, {*this},
                [inv](const Tensor& g, const NeedsGrad&) { return G{g.permute(inv)}; });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  return record("TransposeBackward", ops::transpose(*this, d0, d1), {*this},
                [d0, d1](const Tensor& g, const NeedsGrad&) { return G{g.transpose(d0, d1)}; });
}

Tensor Tensor::t() const {
  if (dim() > 2) fail("t() expects a tensor with at most 2 dims, got {}; use transpose()", dim());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  Shape in = sizes();
  DType dt = dtype();
  Device dev = device();
  return record("SliceBackward", ops::slice(*this, d, start, end, step), {*this},
                [=](const Tensor& g, const NeedsGrad&) {
                  Tensor z = zeros(in, {dt, dev});
                  ops::copy_(ops::slice(z, d, start, end, step), g);
                  return G{z};
                });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  int64_t n = size(d);
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start + length > n)
    fail("narrow: start {} and length {} do not fit dim {} of size {}", start, length, d, n);
  return slice(d, start, start + length, 1);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  Shape in = sizes();
  DType dt = dtype();
  Device dev = device();
  return record("SelectBackward", ops::select(*this, d, index), {*this}, [=](const Tensor& g, const NeedsGrad&) {
    Tensor z = zeros(in, {dt, dev});
    ops::copy_(ops::select(z, d, index), g);
    return G{z};
  });
}

Tensor Tensor::expand(const Shape& shape) const {
  Shape in = sizes();
  return record("ExpandBackward", ops::expand(*this, shape), {*this},
                [in](const Tensor& g, const NeedsGrad&) { return G{ops::sum_to(g, in)}; });
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t d : sizes())
    if (d != 1) s.push_back(d);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  Shape in = sizes();
  return record("SqueezeBackward", ops::squeeze(*this, d), {*this},
                [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  Shape in = sizes();
  return record("UnsqueezeBackward", ops::unsqueeze(*this, d), {*this},
                [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  return record("CloneBackward", ops::clone(*this), {*this}, [](const Tensor& g, const NeedsGrad&) { return G{g}; });
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  DType in = dtype();
  return record("ToDTypeBackward", ops::to_dtype(*this, dt), {*this},
                [in](const Tensor& g, const NeedsGrad&) { return G{ops::to_dtype(g, in)}; });
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Device in = device();
  return record("ToDeviceBackward", ops::to_device(*this, dev), {*this},
                [in](const Tensor& g, const NeedsGrad&) { return G{ops::to_device(g, in)}; });
}

// ---- unary ----------------------------------------------------------------------------------------

Tensor Tensor::neg() const {
  return record("NegBackward", ops::unary(UnaryOp::Neg, *this), {*this},
                [](const Tensor& g, const NeedsGrad&) { return G{ops::unary(UnaryOp::Neg, g)}; });
}

Tensor Tensor::exp() const {
  Tensor out = ops::unary(UnaryOp::Exp, *this);
  Tensor y = save(out);
  return record("ExpBackward", out, {*this},
                [y](const Tensor& g, const NeedsGrad&) { return G{ops::binary(BinaryOp::Mul, g, y)}; });
}

Tensor Tensor::log() const {
  Tensor x = save(*this);
  return record("LogBackward", ops::unary(UnaryOp::Log, *this), {*this},
                [x](const Tensor& g, const NeedsGrad&) { return G{ops::binary(BinaryOp::Div, g, x)}; });
}

Tensor Tensor::sqrt() const {
  Tensor out = ops::unary(UnaryOp::Sqrt, *this);
  Tensor y = save(out);
  return record("SqrtBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) {
    return G{ops::binary(BinaryOp::Div, g, ops::binary_scalar(BinaryOp::Mul, y, 2.0))};
  });
}

Tensor Tensor::abs() const {
  Tensor x = save(*this);
  return record("AbsBackward", ops::unary(UnaryOp::Abs, *this), {*this}, [x](const Tensor& g, const NeedsGrad&) {
    return G{ops::binary(BinaryOp::Mul, g, ops::unary(UnaryOp::Sign, x))};
  });
}

Tensor Tensor::relu() const {
  Tensor out = ops::unary(UnaryOp::Relu, *this);
  Tensor y = save(out);
  return record("ReluBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) {
    return G{ops::relu_backward(g, y)};  // g where y > 0: one fused pass, no mask tensor
  });
}

Tensor Tensor::sigmoid() const {
  Tensor out = ops::unary(UnaryOp::Sigmoid, *this);
  Tensor y = save(out);
  return record("SigmoidBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) {
    Tensor one_minus = ops::binary_scalar(BinaryOp::Sub, ops::unary(UnaryOp::Neg, y), -1.0);  // 1 - y
    return G{ops::binary(BinaryOp::Mul, g, ops::binary(BinaryOp::Mul, y, one_minus))};
  });
}

Tensor Tensor::tanh() const {
  Tensor out = ops::unary(UnaryOp::Tanh, *this);
  Tensor y = save(out);
  return record("TanhBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) {
    Tensor d = ops::binary_scalar(BinaryOp::Sub, ops::unary(UnaryOp::Neg, ops::binary(BinaryOp::Mul, y, y)), -1.0);
    return G{ops::binary(BinaryOp::Mul, g, d)};
  });
}

Tensor Tensor::pow(double e) const {
  Tensor x = save(*this);
  return record("PowBackward", ops::pow_scalar(*this, e), {*this}, [x, e](const Tensor& g, const NeedsGrad&) {
    if (e == 0.0) return G{zeros_like(x)};
    Tensor d = ops::binary_scalar(BinaryOp::Mul, ops::pow_scalar(x, e - 1.0), e);
    return G{ops::binary(BinaryOp::Mul, g, d)};
  });
}

// ---- binary ---------------------------------------------------------------------------------------

Tensor Tensor::add(const Tensor& o) const {
  Shape sa = sizes(), sb = o.sizes();
  return record("AddBackward", ops::binary(BinaryOp::Add, *this, o), {*this, o},
                [sa, sb](const Tensor& g, const NeedsGrad& n) {
                  return G{n[0] ? ops::sum_to(g, sa) : Tensor(), n[1] ? ops::sum_to(g, sb) : Tensor()};
                });
}

Tensor Tensor::sub(const Tensor& o) const {
  Shape sa = sizes(), sb = o.sizes();
  return record("SubBackward", ops::binary(BinaryOp::Sub, *this, o), {*this, o},
                [sa, sb](const Tensor& g, const NeedsGrad& n) {
                  return G{n[0] ? ops::sum_to(g, sa) : Tensor(),
                           n[1] ? ops::sum_to(ops::unary(UnaryOp::Neg, g), sb) : Tensor()};
                });
}

Tensor Tensor::mul(const Tensor& o) const {
  Tensor a = save(*this), b = save(o);
  return record("MulBackward", ops::binary(BinaryOp::Mul, *this, o), {*this, o},
                [a, b](const Tensor& g, const NeedsGrad& n) {
                  return G{n[0] ? ops::sum_to(ops::binary(BinaryOp::Mul, g, b), a.sizes()) : Tensor(),
                           n[1] ? ops::sum_to(ops::binary(BinaryOp::Mul, g, a), b.sizes()) : Tensor()};
                });
}

Tensor Tensor::div(const Tensor& o) const {
  Tensor a = save(*this), b = save(o);
  return record("DivBackward", ops::binary(BinaryOp::Div, *this, o), {*this, o},
                [a, b](const Tensor& g, const NeedsGrad& n) {
                  Tensor ga, gb;
                  if (n[0]) ga = ops::sum_to(ops::binary(BinaryOp::Div, g, b), a.sizes());
                  if (n[1]) {
                    // d(a/b)/db = -a / b^2
                    Tensor t = ops::binary(BinaryOp::Div, ops::binary(BinaryOp::Mul, g, a), ops::binary(BinaryOp::Mul, b, b));
                    gb = ops::sum_to(ops::unary(UnaryOp::Neg, t), b.sizes());
                  }
                  return G{ga, gb};
                });
}

Tensor Tensor::maximum(const Tensor& o) const {
  Tensor a = save(*this), b = save(o);
  return record("MaximumBackward", ops::binary(BinaryOp::Maximum, *this, o), {*this, o},
                [a, b](const Tensor& g, const NeedsGrad& n) {
                  // ties split the gradient in half, as PyTorch does
                  DType dt = g.dtype();
                  Tensor gt = ops::to_dtype(ops::binary(BinaryOp::Gt, a, b), dt);
                  Tensor eq = ops::binary_scalar(BinaryOp::Mul, ops::to_dtype(ops::binary(BinaryOp::Eq, a, b), dt), 0.5);
                  Tensor wa = ops::binary(BinaryOp::Add, gt, eq);
                  Tensor lt = ops::to_dtype(ops::binary(BinaryOp::Lt, a, b), dt);
                  Tensor wb = ops::binary(BinaryOp::Add, lt, eq);
                  return G{n[0] ? ops::sum_to(ops::binary(BinaryOp::Mul, g, wa), a.sizes()) : Tensor(),
                           n[1] ? ops::sum_to(ops::binary(BinaryOp::Mul, g, wb), b.sizes()) : Tensor()};
                });
}

Tensor Tensor::add(double s) const {
  return record("AddScalarBackward", ops::binary_scalar(BinaryOp::Add, *this, s), {*this},
                [](const Tensor& g, const NeedsGrad&) { return G{g}; });
}
Tensor Tensor::sub(double s) const { return add(-s); }
Tensor Tensor::mul(double s) const {
  return record("MulScalarBackward", ops::binary_scalar(BinaryOp::Mul, *this, s), {*this},
                [s](const Tensor& g, const NeedsGrad&) { return G{ops::binary_scalar(BinaryOp::Mul, g, s)}; });
}
Tensor Tensor::div(double s) const {
  return record("DivScalarBackward", ops::binary_scalar(BinaryOp::Div, *this, s), {*this},
                [s](const Tensor& g, const NeedsGrad&) { return G{ops::binary_scalar(BinaryOp::Div, g, s)}; });
}

Tensor Tensor::eq(const Tensor& o) const { return ops::binary(BinaryOp::Eq, *this, o); }
Tensor Tensor::ne(const Tensor& o) const { return ops::binary(BinaryOp::Ne, *this, o); }
Tensor Tensor::lt(const Tensor& o) const { return ops::binary(BinaryOp::Lt, *this, o); }
Tensor Tensor::le(const Tensor& o) const { return ops::binary(BinaryOp::Le, *this, o); }
Tensor Tensor::gt(const Tensor& o) const { return ops::binary(BinaryOp::Gt, *this, o); }
Tensor Tensor::ge(const Tensor& o) const { return ops::binary(BinaryOp::Ge, *this, o); }
Tensor Tensor::eq(double s) const { return ops::binary_scalar(BinaryOp::Eq, *this, s); }
Tensor Tensor::lt(double s) const { return ops::binary_scalar(BinaryOp::Lt, *this, s); }
Tensor Tensor::gt(double s) const { return ops::binary_scalar(BinaryOp::Gt, *this, s); }

Tensor operator-(const Tensor& a) { return a.neg(); }
Tensor operator+(const Tensor& a, const Tensor& b) { return a.add(b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return a.sub(b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return a.mul(b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return a.div(b); }
Tensor operator+(const Tensor& a, double s) { return a.add(s); }
Tensor operator-(const Tensor& a, double s) { return a.sub(s); }
Tensor operator*(const Tensor& a, double s) { return a.mul(s); }
Tensor operator/(const Tensor& a, double s) { return a.div(s); }
Tensor operator+(double s, const Tensor& a) { return a.add(s); }
Tensor operator-(double s, const Tensor& a) { return a.neg().add(s); }
Tensor operator*(double s, const Tensor& a) { return a.mul(s); }
Tensor operator/(double s, const Tensor& a) { return a.pow(-1.0).mul(s); }

Tensor maximum(const Tensor& a, const Tensor& b) { return a.maximum(b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor c = save(cond);
  Shape sa = a.sizes(), sb = b.sizes();
  return record("WhereBackward", ops::where(cond, a, b), {a, b}, [c, sa, sb](const Tensor& g, const NeedsGrad& n) {
    Tensor z = zeros({}, {g.dtype(), g.device()});
    return G{n[0] ? ops::sum_to(ops::where(c, g, z), sa) : Tensor(),
             n[1] ? ops::sum_to(ops::where(c, z, g), sb) : Tensor()};
  });
}

// ---- reductions -----------------------------------------------------------------------------------

namespace {
// Brings a reduced gradient back to the input's shape: re-insert the reduced dims, then expand.
Tensor expand_reduced(const Tensor& g, const Shape& in, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor r = g;
  if (!keepdim) {
    Shape kept = in;
    for (int64_t d : dims) kept[d] = 1;
    r = ops::view(ops::contiguous(g), kept);
  }
  return ops::expand(r, in);
}
}  // namespace

Tensor Tensor::sum(const std::vector<int64_t>& dims_in, bool keepdim) const {
  auto dims = ops::normalize_dims(dims_in, dim());
  Shape in = sizes();
  return record("SumBackward", ops::reduce(ops::ReduceOp::Sum, *this, dims, keepdim), {*this},
                [in, dims, keepdim](const Tensor& g, const NeedsGrad&) {
                  return G{ops::contiguous(expand_reduced(g, in, dims, keepdim))};
                });
}
Tensor Tensor::sum() const { return sum({}, false); }

Tensor Tensor::mean(const std::vector<int64_t>& dims_in, bool keepdim) const {
  auto dims = ops::normalize_dims(dims_in, dim());
  Shape in = sizes();
  int64_t n = 1;
  for (int64_t d : dims) n *= in[d];
  return record("MeanBackward", ops::reduce(ops::ReduceOp::Mean, *this, dims, keepdim), {*this},
                [in, dims, keepdim, n](const Tensor& g, const NeedsGrad&) {
                  return G{ops::binary_scalar(BinaryOp::Div, expand_reduced(g, in, dims, keepdim), static_cast<double>(n))};
                });
}
Tensor Tensor::mean() const { return mean({}, false); }

Tensor Tensor::max() const {
  if (numel() == 0) fail("max() of an empty tensor");
  Tensor out = ops::reduce(ops::ReduceOp::Max, *this, {}, false);
  Tensor x = save(*this), y = save(out);
  return record("MaxBackward", out, {*this}, [x, y](const Tensor& g, const NeedsGrad&) {
    // the gradient is shared evenly by all maximal elements, as PyTorch's max()
    Tensor mask = ops::to_dtype(ops::binary(BinaryOp::Eq, x, y), g.dtype());
    Tensor count = ops::reduce(ops::ReduceOp::Sum, mask, {}, false);
    return G{ops::binary(BinaryOp::Mul, mask, ops::binary(BinaryOp::Div, g, count))};
  });
}

Tensor Tensor::max(int64_t d, bool keepdim) const {
  d = wrap_dim(d, dim());
  auto [values, indices] = ops::max_dim(*this, d, keepdim);
  Shape in = sizes();
  Tensor idx = indices;
  return record("MaxDimBackward", values, {*this}, [in, idx, d, keepdim](const Tensor& g, const NeedsGrad&) {
    Tensor gi = keepdim ? g : ops::unsqueeze(g, d);
    Tensor ii = keepdim ? idx : ops::unsqueeze(idx, d);
    return G{ops::scatter_add(in, d, ops::contiguous(ii), ops::contiguous(gi))};
  });
}

Tensor Tensor::argmax(int64_t d, bool keepdim) const { return ops::max_dim(*this, d, keepdim).second; }

Tensor Tensor::var(const std::vector<int64_t>& dims_in, bool unbiased, bool keepdim) const {
  auto dims = ops::normalize_dims(dims_in, dim());
  Tensor x = save(*this);
  int64_t n = 1;
  for (int64_t d : dims) n *= sizes()[d];
  return record("VarBackward", ops::var(*this, dims, unbiased, keepdim), {*this},
                [x, dims, unbiased, keepdim, n](const Tensor& g, const NeedsGrad&) {
                  // d var / dx = 2 (x - mean) / (n - unbiased)
                  Tensor mean = ops::reduce(ops::ReduceOp::Mean, x, dims, true);
                  Tensor c = ops::binary(BinaryOp::Sub, x, mean);
                  Tensor ge = expand_reduced(g, x.sizes(), dims, keepdim);
                  double scale = 2.0 / static_cast<double>(unbiased ? n - 1 : n);
                  return G{ops::binary_scalar(BinaryOp::Mul, ops::binary(BinaryOp::Mul, ge, c), scale)};
                });
}

// ---- matmul, softmax, indexing ---------------------------------------------------------------------

Tensor Tensor::matmul(const Tensor& o) const {
  if (dim() == 1 && o.dim() == 1) return unsqueeze(0).matmul(o.unsqueeze(1)).reshape({});
  if (dim() == 1) return unsqueeze(0).matmul(o).squeeze(-2);
  if (o.dim() == 1) return matmul(o.unsqueeze(1)).squeeze(-1);
  Tensor a = save(*this), b = save(o);
  return record("MatmulBackward", ops::matmul(*this, o), {*this, o}, [a, b](const Tensor& g, const NeedsGrad& n) {
    Tensor ga, gb;
    if (n[0]) ga = ops::sum_to(ops::matmul(g, ops::transpose(b, -1, -2)), a.sizes());
    if (n[1]) gb = ops::sum_to(ops::matmul(ops::transpose(a, -1, -2), g), b.sizes());
    return G{ga, gb};
  });
}
Tensor matmul(const Tensor& a, const Tensor& b) { return a.matmul(b); }

Tensor Tensor::softmax(int64_t d) const {
  Tensor out = ops::softmax(*this, d);
  Tensor y = save(out);
  return record("SoftmaxBackward", out, {*this},
                [y, d](const Tensor& g, const NeedsGrad&) { return G{ops::softmax_backward(g, y, d)}; });
}

Tensor Tensor::log_softmax(int64_t d) const {
  Tensor out = ops::log_softmax(*this, d);
  Tensor y = save(out);
  return record("LogSoftmaxBackward", out, {*this},
                [y, d](const Tensor& g, const NeedsGrad&) { return G{ops::log_softmax_backward(g, y, d)}; });
}

Tensor Tensor::gather(int64_t d, const Tensor& index) const {
  Shape in = sizes();
  Tensor idx = save(index);
  return record("GatherBackward", ops::gather(*this, d, index), {*this}, [in, d, idx](const Tensor& g, const NeedsGrad&) {
    return G{ops::scatter_add(in, d, idx, g)};
  });
}

Tensor Tensor::index_select(int64_t d, const Tensor& index) const {
  Shape in = sizes();
  Tensor idx = save(index);
  return record("IndexSelectBackward", ops::index_select(*this, d, index), {*this},
                [in, d, idx](const Tensor& g, const NeedsGrad&) { return G{ops::index_add(in, d, idx, g)}; });
}

Tensor cat(const std::vector<Tensor>& xs, int64_t d) {
  Tensor out = ops::cat(xs, d);
  d = wrap_dim(d, xs.at(0).dim());
  std::vector<int64_t> lens;
  for (const auto& t : xs) lens.push_back(t.sizes()[d]);
  return record("CatBackward", out, xs, [lens, d](const Tensor& g, const NeedsGrad& n) {
    G grads;
    int64_t at = 0;
    for (size_t i = 0; i < lens.size(); ++i) {
      grads.push_back(n[i] ? ops::contiguous(ops::slice(g, d, at, at + lens[i], 1)) : Tensor());
      at += lens[i];
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& xs, int64_t d) {
  if (xs.empty()) fail("stack: no tensors given");
  d = wrap_dim(d, xs[0].dim() + 1);
  std::vector<Tensor> us;
  for (const auto& t : xs) {
    if (t.sizes() != xs[0].sizes())
      fail("stack: all tensors need the same shape, got {} and {}", shape_str(xs[0].sizes()), shape_str(t.sizes()));
    us.push_back(t.unsqueeze(d));
  }
  return cat(us, d);
}

// ---- in place -----------------------------------------------------------------------------------

Tensor& Tensor::fill_(double v) {
  check_inplace(*this, "fill_");
  ops::fill_(*this, v);
  return *this;
}
Tensor& Tensor::zero_() { return fill_(0.0); }
Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  ops::copy_(*this, src);
  return *this;
}
Tensor& Tensor::add_(const Tensor& o, double alpha) {
  check_inplace(*this, "add_");
  ops::add_(*this, o, alpha);
  return *this;
}
Tensor& Tensor::mul_(double s) {
  check_inplace(*this, "mul_");
  ops::copy_(*this, ops::binary_scalar(BinaryOp::Mul, *this, s));
  return *this;
}

}  // namespace dl
