// Tensor's differentiable methods: each op's forward (a raw op from tensor/ops.h) next to its
// backward (the closure given to record()). Backward closures run with grad mode off (the engine
// holds a NoGradGuard) and are written with the same Tensor operators and methods as user code:
// `g * (1 - y * y)`. With grad mode off each operator is its raw op and nothing more, because
// every method asks autograd::needs_graph() before it saves anything for a backward. Raw ops
// appear only where a fused kernel does what no composition of methods would (relu_backward,
// softmax_backward, the scatter kernels of gather/index_select/max). Saved tensors go through
// save() (detached aliases).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/node.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"

namespace dl {

using autograd::needs_graph;
using autograd::NeedsGrad;
using autograd::record;
using autograd::save;
using autograd::trace_info;
using autograd::TraceInfo;
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

// A 0-d tensor holding s, in t's dtype and on its device: the scalar operand of an elementwise op.
Tensor scalar_like(const Tensor& t, double s) { return full({}, s, {t.dtype(), t.device()}); }
}  // namespace

// ---- autograd accessors ---------------------------------------------------------------------------

Tensor& Tensor::requires_grad_(bool on) {
  if (!is_leaf()) fail("requires_grad_() can only change leaf tensors; use detach() first");
  if (on) check_computable(dtype(), "requires_grad_");
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
  Tensor out = ops::view(*this, shape);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  return record("ViewBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
}

Tensor Tensor::reshape(const Shape& shape) const {
  Tensor out = ops::can_view(*this, shape) ? ops::view(*this, shape) : ops::view(ops::clone(*this), shape);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  return record("ReshapeBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
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
  if (!needs_graph(*this)) return out;
  std::vector<int64_t> inv(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inv[wrap_dim(dims[i], dim())] = static_cast<int64_t>(i);
  return record("PermuteBackward", out, {*this}, [inv](const Tensor& g, const NeedsGrad&) { return G{g.permute(inv)}; },
                trace_info([&] {
                  std::vector<int64_t> perm;
                  for (int64_t d : dims) perm.push_back(wrap_dim(d, dim()));
                  return TraceInfo{{{"perm", perm, {}}}};
                }));
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Tensor out = ops::transpose(*this, d0, d1);
  if (!needs_graph(*this)) return out;
  return record("TransposeBackward", out, {*this},
                [d0, d1](const Tensor& g, const NeedsGrad&) { return G{g.transpose(d0, d1)}; },
                trace_info([&] { return TraceInfo{{{"dims", {wrap_dim(d0, dim()), wrap_dim(d1, dim())}, {}}}}; }));
}

Tensor Tensor::t() const {
  if (dim() > 2) fail("t() expects a tensor with at most 2 dims, got {}; use transpose()", dim());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  Tensor out = ops::slice(*this, d, start, end, step);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  DType dt = dtype();
  Device dev = device();
  return record("SliceBackward", out, {*this}, [=](const Tensor& g, const NeedsGrad&) {
    Tensor z = zeros(in, {dt, dev});
    z.slice(d, start, end, step).copy_(g);
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
  Tensor out = ops::select(*this, d, index);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  DType dt = dtype();
  Device dev = device();
  return record("SelectBackward", out, {*this}, [=](const Tensor& g, const NeedsGrad&) {
    Tensor z = zeros(in, {dt, dev});
    z.select(d, index).copy_(g);
    return G{z};
  });
}

Tensor Tensor::expand(const Shape& shape) const {
  Tensor out = ops::expand(*this, shape);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  return record("ExpandBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.sum_to_size(in)}; });
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t d : sizes())
    if (d != 1) s.push_back(d);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  Tensor out = ops::squeeze(*this, d);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  return record("SqueezeBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  Tensor out = ops::unsqueeze(*this, d);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  return record("UnsqueezeBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.reshape(in)}; });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = ops::clone(*this);
  if (!needs_graph(*this)) return out;
  return record("CloneBackward", out, {*this}, [](const Tensor& g, const NeedsGrad&) { return G{g}; });
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = ops::to_dtype(*this, dt);
  if (!needs_graph(*this)) return out;
  DType in = dtype();
  return record("ToDTypeBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.to(in)}; });
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor out = ops::to_device(*this, dev);
  if (!needs_graph(*this)) return out;
  Device in = device();
  return record("ToDeviceBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.to(in)}; });
}

// ---- unary ----------------------------------------------------------------------------------------

Tensor Tensor::neg() const {
  Tensor out = ops::unary(UnaryOp::Neg, *this);
  if (!needs_graph(*this)) return out;
  return record("NegBackward", out, {*this}, [](const Tensor& g, const NeedsGrad&) { return G{-g}; });
}

Tensor Tensor::exp() const {
  Tensor out = ops::unary(UnaryOp::Exp, *this);
  if (!needs_graph(*this)) return out;
  Tensor y = save(out);
  return record("ExpBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) { return G{g * y}; });
}

Tensor Tensor::log() const {
  Tensor out = ops::unary(UnaryOp::Log, *this);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("LogBackward", out, {*this}, [x](const Tensor& g, const NeedsGrad&) { return G{g / x}; });
}

Tensor Tensor::sqrt() const {
  Tensor out = ops::unary(UnaryOp::Sqrt, *this);
  if (!needs_graph(*this)) return out;
  Tensor y = save(out);
  return record("SqrtBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) { return G{g / (y * 2.0)}; });
}

Tensor Tensor::abs() const {
  Tensor out = ops::unary(UnaryOp::Abs, *this);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("AbsBackward", out, {*this}, [x](const Tensor& g, const NeedsGrad&) { return G{g * x.sign()}; });
}

Tensor Tensor::relu() const {
  Tensor out = ops::unary(UnaryOp::Relu, *this);
  if (!needs_graph(*this)) return out;
  Tensor y = save(out);
  return record("ReluBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) {
    return G{ops::relu_backward(g, y)};  // fused kernel: g where y > 0 in one pass, no mask tensor
  });
}

Tensor Tensor::sigmoid() const {
  Tensor out = ops::unary(UnaryOp::Sigmoid, *this);
  if (!needs_graph(*this)) return out;
  Tensor y = save(out);
  return record("SigmoidBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) { return G{g * (y * (1 - y))}; });
}

Tensor Tensor::tanh() const {
  Tensor out = ops::unary(UnaryOp::Tanh, *this);
  if (!needs_graph(*this)) return out;
  Tensor y = save(out);
  return record("TanhBackward", out, {*this}, [y](const Tensor& g, const NeedsGrad&) { return G{g * (1 - y * y)}; });
}

Tensor Tensor::silu() const {
  Tensor out = ops::unary(UnaryOp::Silu, *this);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("SiluBackward", out, {*this}, [x](const Tensor& g, const NeedsGrad&) {
    return G{g * ops::unary(UnaryOp::SiluGrad, x)};  // s (1 + x (1 - s)), s = sigmoid(x), in one pass
  });
}

Tensor Tensor::leaky_relu(double slope) const {
  Tensor out = ops::unary(UnaryOp::LeakyRelu, *this, {.alpha = slope});
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("LeakyReluBackward", out, {*this}, [x, slope](const Tensor& g, const NeedsGrad&) {
    return G{g * ops::unary(UnaryOp::LeakyReluGrad, x, {.alpha = slope})};  // 1 where x > 0, else the slope
  }, trace_info([&] { return TraceInfo{{{"alpha", {}, {slope}}}}; }));
}

Tensor Tensor::gelu(const std::string& approximate) const {
  if (approximate != "none" && approximate != "tanh")
    fail("gelu: approximate must be \"none\" or \"tanh\", got \"{}\"", approximate);
  const bool tanh_form = approximate == "tanh";
  Tensor out = ops::unary(tanh_form ? UnaryOp::GeluTanh : UnaryOp::Gelu, *this);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("GeluBackward", out, {*this}, [x, tanh_form](const Tensor& g, const NeedsGrad&) {
    // the derivative is a fused kernel of its own (one pass instead of six)
    return G{g * ops::unary(tanh_form ? UnaryOp::GeluTanhGrad : UnaryOp::GeluGrad, x)};
  }, trace_info([&] { return TraceInfo{{{"tanh", {tanh_form ? 1 : 0}, {}}}}; }));
}

Tensor Tensor::hardswish() const {
  Tensor out = ops::unary(UnaryOp::Hardswish, *this);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("HardswishBackward", out, {*this}, [x](const Tensor& g, const NeedsGrad&) {
    return G{g * ops::unary(UnaryOp::HardswishGrad, x)};  // the piecewise derivative: a fused kernel
  });
}

Tensor Tensor::clamp(double lo, double hi) const {
  if (std::isnan(lo) || std::isnan(hi)) fail("clamp: min and max must be numbers, got {} and {}", lo, hi);
  ops::UnaryArgs bounds{.alpha = lo, .beta = hi};
  if (!is_floating(dtype())) {
    // The kernel casts the bounds to the element type, and a double outside its range (an infinite
    // bound, say) has no integer value: bring them inside it first, rounded inward as comparing
    // with integers would. Bounds beyond the range saturate (uint8 clamp(300, 400) gives 255).
    const double tmin = dtype() == DType::UInt8 ? 0.0 : -9223372036854775808.0;
    const double tmax = dtype() == DType::UInt8 ? 255.0 : 9223372036854774784.0;  // the largest double below 2^63
    bounds.alpha = std::clamp(std::ceil(lo), tmin, tmax);
    bounds.beta = std::clamp(std::floor(hi), tmin, tmax);
  }
  Tensor out = ops::unary(UnaryOp::Clamp, *this, bounds);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("ClampBackward", out, {*this}, [x, bounds](const Tensor& g, const NeedsGrad&) {
    return G{g * ops::unary(UnaryOp::ClampGrad, x, bounds)};  // 1 where min <= x <= max, NaN excluded
  }, trace_info([&] { return TraceInfo{{{"bounds", {}, {lo, hi}}}}; }));
}

Tensor Tensor::pow(double e) const {
  Tensor out = ops::pow_scalar(*this, e);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  return record("PowBackward", out, {*this}, [x, e](const Tensor& g, const NeedsGrad&) {
    if (e == 0.0) return G{zeros_like(x)};
    return G{g * (x.pow(e - 1.0) * e)};
  }, trace_info([&] { return TraceInfo{{{"exponent", {}, {e}}}}; }));
}

// ---- binary ---------------------------------------------------------------------------------------
// A broadcast operand's gradient is summed back to its own shape (sum_to_size).

Tensor Tensor::add(const Tensor& o) const {
  Tensor out = ops::binary(BinaryOp::Add, *this, o);
  if (!needs_graph(*this, o)) return out;
  Shape sa = sizes(), sb = o.sizes();
  return record("AddBackward", out, {*this, o}, [sa, sb](const Tensor& g, const NeedsGrad& n) {
    return G{n[0] ? g.sum_to_size(sa) : Tensor(), n[1] ? g.sum_to_size(sb) : Tensor()};
  });
}

Tensor Tensor::sub(const Tensor& o) const {
  Tensor out = ops::binary(BinaryOp::Sub, *this, o);
  if (!needs_graph(*this, o)) return out;
  Shape sa = sizes(), sb = o.sizes();
  return record("SubBackward", out, {*this, o}, [sa, sb](const Tensor& g, const NeedsGrad& n) {
    return G{n[0] ? g.sum_to_size(sa) : Tensor(), n[1] ? (-g).sum_to_size(sb) : Tensor()};
  });
}

Tensor Tensor::mul(const Tensor& o) const {
  Tensor out = ops::binary(BinaryOp::Mul, *this, o);
  if (!needs_graph(*this, o)) return out;
  Tensor a = save(*this), b = save(o);
  return record("MulBackward", out, {*this, o}, [a, b](const Tensor& g, const NeedsGrad& n) {
    return G{n[0] ? (g * b).sum_to_size(a.sizes()) : Tensor(), n[1] ? (g * a).sum_to_size(b.sizes()) : Tensor()};
  });
}

Tensor Tensor::div(const Tensor& o) const {
  Tensor out = ops::binary(BinaryOp::Div, *this, o);
  if (!needs_graph(*this, o)) return out;
  Tensor a = save(*this), b = save(o);
  return record("DivBackward", out, {*this, o}, [a, b](const Tensor& g, const NeedsGrad& n) {
    return G{n[0] ? (g / b).sum_to_size(a.sizes()) : Tensor(),
             n[1] ? (-(g * a / (b * b))).sum_to_size(b.sizes()) : Tensor()};  // d(a/b)/db = -a / b^2
  });
}

Tensor Tensor::maximum(const Tensor& o) const {
  Tensor out = ops::binary(BinaryOp::Maximum, *this, o);
  if (!needs_graph(*this, o)) return out;
  Tensor a = save(*this), b = save(o);
  return record("MaximumBackward", out, {*this, o}, [a, b](const Tensor& g, const NeedsGrad& n) {
    // ties split the gradient in half, as PyTorch does
    DType dt = g.dtype();
    Tensor tie = a.eq(b).to(dt) * 0.5;
    Tensor wa = a.gt(b).to(dt) + tie, wb = a.lt(b).to(dt) + tie;
    return G{n[0] ? (g * wa).sum_to_size(a.sizes()) : Tensor(), n[1] ? (g * wb).sum_to_size(b.sizes()) : Tensor()};
  });
}

Tensor Tensor::add(double s) const {
  Tensor out = ops::binary_scalar(BinaryOp::Add, *this, s);
  if (!needs_graph(*this)) return out;
  return record("AddScalarBackward", out, {*this}, [](const Tensor& g, const NeedsGrad&) { return G{g}; }, trace_info([&] { return TraceInfo{{{"scalar", {}, {s}}}}; }));
}
Tensor Tensor::sub(double s) const { return add(-s); }
Tensor Tensor::mul(double s) const {
  Tensor out = ops::binary_scalar(BinaryOp::Mul, *this, s);
  if (!needs_graph(*this)) return out;
  return record("MulScalarBackward", out, {*this}, [s](const Tensor& g, const NeedsGrad&) { return G{g * s}; }, trace_info([&] { return TraceInfo{{{"scalar", {}, {s}}}}; }));
}
Tensor Tensor::div(double s) const {
  Tensor out = ops::binary_scalar(BinaryOp::Div, *this, s);
  if (!needs_graph(*this)) return out;
  return record("DivScalarBackward", out, {*this}, [s](const Tensor& g, const NeedsGrad&) { return G{g / s}; }, trace_info([&] { return TraceInfo{{{"scalar", {}, {s}}}}; }));
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
Tensor operator-(double s, const Tensor& a) {
  // one pass with the scalar on the left (torch.rsub); the same values as -a + s
  Tensor out = ops::binary(BinaryOp::Sub, scalar_like(a, s), a);
  if (!needs_graph(a)) return out;
  return record("RsubBackward", out, {a}, [](const Tensor& g, const NeedsGrad&) { return G{-g}; }, trace_info([&] { return TraceInfo{{{"scalar", {}, {s}}}}; }));
}
Tensor operator*(double s, const Tensor& a) { return a.mul(s); }
Tensor operator/(double s, const Tensor& a) { return a.pow(-1.0).mul(s); }  // as torch: reciprocal, then scale

Tensor maximum(const Tensor& a, const Tensor& b) { return a.maximum(b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = ops::where(cond, a, b);
  if (!needs_graph(a, b)) return out;
  Tensor c = save(cond);
  Shape sa = a.sizes(), sb = b.sizes();
  return record("WhereBackward", out, {a, b}, [c, sa, sb](const Tensor& g, const NeedsGrad& n) {
    Tensor z = zeros({}, {g.dtype(), g.device()});
    return G{n[0] ? where(c, g, z).sum_to_size(sa) : Tensor(), n[1] ? where(c, z, g).sum_to_size(sb) : Tensor()};
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
    r = g.contiguous().view(kept);
  }
  return r.expand(in);
}
}  // namespace

Tensor Tensor::sum(const std::vector<int64_t>& dims_in, bool keepdim) const {
  auto dims = ops::normalize_dims(dims_in, dim());
  Tensor out = ops::reduce(ops::ReduceOp::Sum, *this, dims, keepdim);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  return record("SumBackward", out, {*this}, [in, dims, keepdim](const Tensor& g, const NeedsGrad&) {
    return G{expand_reduced(g, in, dims, keepdim).contiguous()};
  }, trace_info([&] { return TraceInfo{{{"axes", dims, {}}, {"keepdim", {keepdim ? 1 : 0}, {}}}}; }));
}
Tensor Tensor::sum() const { return sum({}, false); }

Tensor Tensor::mean(const std::vector<int64_t>& dims_in, bool keepdim) const {
  auto dims = ops::normalize_dims(dims_in, dim());
  Tensor out = ops::reduce(ops::ReduceOp::Mean, *this, dims, keepdim);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  int64_t n = 1;
  for (int64_t d : dims) n *= in[d];
  return record("MeanBackward", out, {*this}, [in, dims, keepdim, n](const Tensor& g, const NeedsGrad&) {
    return G{expand_reduced(g, in, dims, keepdim) / static_cast<double>(n)};
  }, trace_info([&] { return TraceInfo{{{"axes", dims, {}}, {"keepdim", {keepdim ? 1 : 0}, {}}}}; }));
}
Tensor Tensor::mean() const { return mean({}, false); }

Tensor Tensor::max() const {
  if (numel() == 0) fail("max() of an empty tensor");
  Tensor out = ops::reduce(ops::ReduceOp::Max, *this, {}, false);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this), y = save(out);
  return record("MaxBackward", out, {*this}, [x, y](const Tensor& g, const NeedsGrad&) {
    // the gradient is shared evenly by all maximal elements, as PyTorch's max()
    Tensor mask = x.eq(y).to(g.dtype());
    return G{mask * (g / mask.sum())};
  });
}

Tensor Tensor::max(int64_t d, bool keepdim) const {
  d = wrap_dim(d, dim());
  auto [values, indices] = ops::max_dim(*this, d, keepdim);
  if (!needs_graph(*this)) return values;
  Shape in = sizes();
  Tensor idx = indices;
  return record("MaxDimBackward", values, {*this}, [in, idx, d, keepdim](const Tensor& g, const NeedsGrad&) {
    Tensor gi = keepdim ? g : g.unsqueeze(d);
    Tensor ii = keepdim ? idx : idx.unsqueeze(d);
    return G{ops::scatter_add(in, d, ii.contiguous(), gi.contiguous())};  // the scatter kernel: each g to its argmax
  });
}

Tensor Tensor::argmax(int64_t d, bool keepdim) const { return ops::max_dim(*this, d, keepdim).second; }

Tensor Tensor::var(const std::vector<int64_t>& dims_in, bool unbiased, bool keepdim) const {
  auto dims = ops::normalize_dims(dims_in, dim());
  Tensor out = ops::var(*this, dims, unbiased, keepdim);
  if (!needs_graph(*this)) return out;
  Tensor x = save(*this);
  int64_t n = 1;
  for (int64_t d : dims) n *= sizes()[d];
  return record("VarBackward", out, {*this}, [x, dims, unbiased, keepdim, n](const Tensor& g, const NeedsGrad&) {
    // d var / dx = 2 (x - mean) / (n - unbiased)
    double scale = 2.0 / static_cast<double>(unbiased ? n - 1 : n);
    return G{expand_reduced(g, x.sizes(), dims, keepdim) * (x - x.mean(dims, true)) * scale};
  });
}

// ---- matmul, softmax, indexing ---------------------------------------------------------------------

Tensor Tensor::matmul(const Tensor& o) const {
  if (dim() == 1 && o.dim() == 1) return unsqueeze(0).matmul(o.unsqueeze(1)).reshape({});
  if (dim() == 1) return unsqueeze(0).matmul(o).squeeze(-2);
  if (o.dim() == 1) return matmul(o.unsqueeze(1)).squeeze(-1);
  Tensor out = ops::matmul(*this, o, gemm_dtype_for(dtype(), device()));
  if (!needs_graph(*this, o)) return out;
  Tensor a = save(*this), b = save(o);
  return record("MatmulBackward", out, {*this, o}, [a, b](const Tensor& g, const NeedsGrad& n) {
    return G{n[0] ? g.matmul(b.transpose(-1, -2)).sum_to_size(a.sizes()) : Tensor(),
             n[1] ? a.transpose(-1, -2).matmul(g).sum_to_size(b.sizes()) : Tensor()};
  });
}
Tensor matmul(const Tensor& a, const Tensor& b) { return a.matmul(b); }

// softmax and log_softmax take their fused backward kernels (one pass over each row).
Tensor Tensor::softmax(int64_t d) const {
  Tensor out = ops::softmax(*this, d);
  if (!needs_graph(*this)) return out;
  Tensor y = save(out);
  return record("SoftmaxBackward", out, {*this},
                [y, d](const Tensor& g, const NeedsGrad&) { return G{ops::softmax_backward(g, y, d)}; }, trace_info([&] { return TraceInfo{{{"axis", {wrap_dim(d, dim())}, {}}}}; }));
}

Tensor Tensor::log_softmax(int64_t d) const {
  Tensor out = ops::log_softmax(*this, d);
  if (!needs_graph(*this)) return out;
  Tensor y = save(out);
  return record("LogSoftmaxBackward", out, {*this},
                [y, d](const Tensor& g, const NeedsGrad&) { return G{ops::log_softmax_backward(g, y, d)}; }, trace_info([&] { return TraceInfo{{{"axis", {wrap_dim(d, dim())}, {}}}}; }));
}

// gather and index_select: their backward is a scatter kernel (scatter_add, index_add).
Tensor Tensor::gather(int64_t d, const Tensor& index) const {
  Tensor out = ops::gather(*this, d, index);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  Tensor idx = save(index);
  return record("GatherBackward", out, {*this},
                [in, d, idx](const Tensor& g, const NeedsGrad&) { return G{ops::scatter_add(in, d, idx, g)}; });
}

Tensor Tensor::index_select(int64_t d, const Tensor& index) const {
  Tensor out = ops::index_select(*this, d, index);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  Tensor idx = save(index);
  return record("IndexSelectBackward", out, {*this},
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
      grads.push_back(n[i] ? g.slice(d, at, at + lens[i]).contiguous() : Tensor());
      at += lens[i];
    }
    return grads;
  }, trace_info([&] { return TraceInfo{{{"axis", {d}, {}}}}; }));
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
  ops::binary_(BinaryOp::Mul, *this, scalar_like(*this, s));  // into this tensor's own memory, no temporary
  return *this;
}

// ---- math helpers: sign, sum_to_size, in-place arithmetic -------------------------------------------

Tensor Tensor::sign() const { return ops::unary(UnaryOp::Sign, *this); }

Tensor Tensor::sum_to_size(const Shape& shape) const {
  Tensor out = ops::sum_to(*this, shape);
  if (!needs_graph(*this)) return out;
  Shape in = sizes();
  return record("SumToSizeBackward", out, {*this}, [in](const Tensor& g, const NeedsGrad&) { return G{g.expand(in)}; });
}

Tensor& Tensor::add_(double s) {
  check_inplace(*this, "add_");
  ops::binary_(BinaryOp::Add, *this, scalar_like(*this, s));
  return *this;
}
Tensor& Tensor::mul_(const Tensor& o) {
  check_inplace(*this, "mul_");
  ops::binary_(BinaryOp::Mul, *this, o);
  return *this;
}
Tensor& Tensor::div_(double s) {
  check_inplace(*this, "div_");
  ops::binary_(BinaryOp::Div, *this, scalar_like(*this, s));
  return *this;
}
Tensor& Tensor::maximum_(const Tensor& o) {
  check_inplace(*this, "maximum_");
  ops::binary_(BinaryOp::Maximum, *this, o);
  return *this;
}

}  // namespace dl
