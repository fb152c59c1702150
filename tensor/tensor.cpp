// The non-differentiable core of Tensor: metadata, element access, factories, printing.
#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace dl {

// ---- shapes ------------------------------------------------------------------------------------

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) fail("invalid shape {}: negative size", shape_str(s));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      fail("invalid shape {}: element count overflows int64", shape_str(s));
    n *= d;
  }
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    int64_t d = std::max<int64_t>(s[i], 1);
    // a zero-size dim makes numel 0, but the strides of the other dims must still fit in int64
    if (i > 0 && acc > std::numeric_limits<int64_t>::max() / d)
      fail("invalid shape {}: its strides overflow int64", shape_str(s));
    acc *= d;
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      fail("shapes {} and {} cannot be broadcast together (dim {}: {} vs {})", shape_str(a),
           shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

int64_t wrap_dim(int64_t dim, int64_t ndim) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  if (dim < lo || dim > hi)
    fail("dimension {} is out of range for a tensor with {} dims (expected [{}, {}])", dim, ndim, lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

// ---- Tensor core --------------------------------------------------------------------------------

TensorImpl& Tensor::impl() const {
  if (!impl_) fail("operation on an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return sizes()[wrap_dim(d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim())]; }
int64_t Tensor::numel() const { return shape_numel(sizes()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  const auto& sz = sizes();
  const auto& st = strides();
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (sz[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sz[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  char* base = static_cast<char*>(impl().storage->data());
  return base + impl().offset * element_size();
}

template <typename T> T* Tensor::data_ptr() const {
  if (dtype_of<T>::value != dtype())
    fail("data_ptr<{}>() called on a {} tensor", dtype_name(dtype_of<T>::value), dtype_name(dtype()));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data_ptr<float>() const;
template double* Tensor::data_ptr<double>() const;
template int64_t* Tensor::data_ptr<int64_t>() const;
template uint8_t* Tensor::data_ptr<uint8_t>() const;
template BFloat16* Tensor::data_ptr<BFloat16>() const;
template Float16* Tensor::data_ptr<Float16>() const;

template <typename T> T Tensor::item() const {
  if (numel() != 1) fail("item() needs a tensor with one element, got shape {}", shape_str(sizes()));
  Tensor c = is_cpu() ? *this : ops::to_device(*this, kCPU);
  return DL_DISPATCH_STORAGE(dtype(), "item", [&] { return convert_scalar<T>(*c.data_ptr<scalar_t>()); });
}
template float Tensor::item<float>() const;
template double Tensor::item<double>() const;
template int64_t Tensor::item<int64_t>() const;
template uint8_t Tensor::item<uint8_t>() const;
template BFloat16 Tensor::item<BFloat16>() const;
template Float16 Tensor::item<Float16>() const;

template <typename T> T Tensor::at(const std::vector<int64_t>& index) const {
  if (!is_cpu()) fail("at() reads CPU tensors only; copy with .to(dl::kCPU) first");
  if (static_cast<int64_t>(index.size()) != dim())
    fail("at(): {} indices for a tensor with {} dims", index.size(), dim());
  int64_t off = 0;
  for (int64_t i = 0; i < dim(); ++i) {
    if (index[i] < 0 || index[i] >= sizes()[i])
      fail("at(): index {} out of range for dim {} of size {}", index[i], i, sizes()[i]);
    off += index[i] * strides()[i];
  }
  return DL_DISPATCH_STORAGE(dtype(), "at", [&] { return convert_scalar<T>(data_ptr<scalar_t>()[off]); });
}
template float Tensor::at<float>(const std::vector<int64_t>&) const;
template double Tensor::at<double>(const std::vector<int64_t>&) const;
template int64_t Tensor::at<int64_t>(const std::vector<int64_t>&) const;
template uint8_t Tensor::at<uint8_t>(const std::vector<int64_t>&) const;
template BFloat16 Tensor::at<BFloat16>(const std::vector<int64_t>&) const;
template Float16 Tensor::at<Float16>(const std::vector<int64_t>&) const;

template <typename T> std::vector<T> Tensor::to_vector() const {
  Tensor c = ops::contiguous(ops::to_dtype(ops::to_device(*this, kCPU), dtype_of<T>::value));
  const T* p = c.data_ptr<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<BFloat16> Tensor::to_vector<BFloat16>() const;
template std::vector<Float16> Tensor::to_vector<Float16>() const;

// ---- factories ----------------------------------------------------------------------------------

namespace {
// A fresh factory result is a leaf: the flag is set directly (Tensor::requires_grad_ belongs to
// the autograd layer, which tensor/ must not call).
void mark_requires_grad(Tensor& t) {
  check_computable(t.dtype(), "requires_grad");
  if (!is_floating(t.dtype())) fail("only floating tensors can require grad, got {}", dtype_name(t.dtype()));
  t.impl().autograd.requires_grad = true;
}
}  // namespace

Tensor empty(const Shape& shape, TensorOptions opt) {
  int64_t n = shape_numel(shape);
  auto impl = std::make_shared<TensorImpl>();
  if (n > std::numeric_limits<int64_t>::max() / dtype_size(opt.dtype))
    fail("tensor of shape {} is too large", shape_str(shape));
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(n * dtype_size(opt.dtype)), opt.device);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opt.dtype;
  Tensor t(std::move(impl));
  if (opt.requires_grad) mark_requires_grad(t);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opt) {
  bool rg = opt.requires_grad;
  opt.requires_grad = false;
  Tensor t = empty(shape, opt);
  ops::fill_(t, value);
  if (rg) mark_requires_grad(t);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opt) { return full(shape, 0.0, opt); }
Tensor ones(const Shape& shape, TensorOptions opt) { return full(shape, 1.0, opt); }
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), {t.dtype(), t.device()}); }
Tensor scalar_tensor(double value, DType dtype) { return full({}, value, dtype); }

Tensor arange(double start, double end, double step, TensorOptions opt) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
    fail("arange({}, {}, {}): step must be non-zero and all values finite", start, end, step);
  double count = std::ceil((end - start) / step);
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor t = empty({n}, {opt.dtype, kCPU});
  DL_DISPATCH_STORAGE(opt.dtype, "arange", [&] {
    auto* p = t.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<scalar_t>(start + static_cast<double>(i) * step);
  });
  t = ops::to_device(t, opt.device);
  if (opt.requires_grad) mark_requires_grad(t);
  return t;
}
Tensor arange(int64_t end, TensorOptions opt) { return arange(0.0, static_cast<double>(end), 1.0, opt); }

namespace {
template <typename Sample>
Tensor random_tensor(const Shape& shape, TensorOptions opt, Generator* gen, Sample sample) {
  Generator& g = gen ? *gen : default_generator();
  if (is_low_precision(opt.dtype)) {  // drawn in float32, then rounded (as PyTorch's CPU generator)
    if (opt.requires_grad) check_computable(opt.dtype, "rand/randn with requires_grad");
    return ops::to_dtype(random_tensor(shape, {DType::Float32, opt.device}, gen, sample), opt.dtype);
  }
  Tensor t = empty(shape, {opt.dtype, kCPU});
  DL_DISPATCH_FLOATING(opt.dtype, "rand/randn", [&] {
    auto* p = t.data_ptr<scalar_t>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<scalar_t>(sample(g));
  });
  t = ops::to_device(t, opt.device);
  if (opt.requires_grad) mark_requires_grad(t);
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, TensorOptions opt, Generator* gen) {
  return random_tensor(shape, opt, gen, [](Generator& g) { return g.uniform(); });
}
Tensor randn(const Shape& shape, TensorOptions opt, Generator* gen) {
  return random_tensor(shape, opt, gen, [](Generator& g) { return g.normal(); });
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opt) {
  if (shape_numel(shape) != static_cast<int64_t>(values.size()))
    fail("from_vector: {} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor t = empty(shape, {dtype_of<T>::value, kCPU});
  std::copy(values.begin(), values.end(), t.data_ptr<T>());
  t = ops::to_device(ops::to_dtype(t, opt.dtype), opt.device);
  if (opt.requires_grad) mark_requires_grad(t);
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, TensorOptions);
template Tensor from_vector<BFloat16>(const std::vector<BFloat16>&, const Shape&, TensorOptions);
template Tensor from_vector<Float16>(const std::vector<Float16>&, const Shape&, TensorOptions);

// ---- comparison helpers for tests ------------------------------------------------------------------

MaxDiff max_difference(const Tensor& a, const Tensor& b) {
  if (a.sizes() != b.sizes())
    fail("max_difference: shapes differ, {} vs {}", shape_str(a.sizes()), shape_str(b.sizes()));
  auto va = a.to_vector<double>();
  auto vb = b.to_vector<double>();
  MaxDiff m{0.0, 0.0, -1, 0.0, 0.0};
  for (size_t i = 0; i < va.size(); ++i) {
    double d = std::abs(va[i] - vb[i]);
    if (std::isnan(va[i]) != std::isnan(vb[i])) d = std::numeric_limits<double>::infinity();
    if (m.index < 0 || d > m.abs_diff) {
      m = {d, d / std::max(std::abs(vb[i]), 1e-30), static_cast<int64_t>(i), va[i], vb[i]};
    }
  }
  return m;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.sizes() != b.sizes()) return false;
  auto va = a.to_vector<double>();
  auto vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) {
    if (std::isnan(va[i]) || std::isnan(vb[i])) return false;
    if (std::abs(va[i] - vb[i]) > atol + rtol * std::abs(vb[i])) return false;
  }
  return true;
}

// ---- printing -------------------------------------------------------------------------------------

namespace {
void print_values(std::ostringstream& os, const std::vector<double>& v, const Shape& sizes, size_t dim,
                  int64_t offset, bool floating, int indent) {
  const int64_t edge = 3;
  int64_t n = sizes[dim];
  int64_t inner = 1;
  for (size_t i = dim + 1; i < sizes.size(); ++i) inner *= sizes[i];
  os << "[";
  bool truncate = n > 2 * edge;
  for (int64_t i = 0; i < n; ++i) {
    if (truncate && i == edge) {
      os << "...";
      i = n - edge - 1;
      os << (dim + 1 == sizes.size() ? ", " : fmt::format(",\n{:{}}", "", indent + 1));
      continue;
    }
    if (dim + 1 == sizes.size()) {
      double x = v[offset + i];
      os << (floating ? fmt::format("{:.4f}", x) : fmt::format("{}", static_cast<int64_t>(x)));
    } else {
      print_values(os, v, sizes, dim + 1, offset + i * inner, floating, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == sizes.size() ? ", " : fmt::format(",\n{:{}}", "", indent + 1));
  }
  os << "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  auto v = to_vector<double>();
  if (dim() == 0) {
    os << (is_floating_point(dtype()) ? fmt::format("{:.4f}", v[0]) : fmt::format("{}", static_cast<int64_t>(v[0])));
  } else if (numel() == 0) {
    os << "[]";
  } else {
    print_values(os, v, sizes(), 0, 0, is_floating_point(dtype()), 7);
  }
  os << fmt::format(", shape={}, dtype={}, device={}", shape_str(sizes()), dtype_name(dtype()), device().str());
  if (requires_grad()) os << ", requires_grad=True";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace dl
