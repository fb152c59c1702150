// Raw ops: argument checks, result shapes and dtypes, then the device's kernel.
#include "tensor/ops.h"

#include <algorithm>
#include <numeric>

#include "tensor/cpu/register.h"
#include "tensor/dispatch.h"

namespace dl {

KernelTable& kernels(DeviceType type) {
  static std::array<KernelTable, kNumDeviceTypes> tables = [] {
    std::array<KernelTable, kNumDeviceTypes> t{};
    cpu::register_kernels(t[0]);
    return t;
  }();
  return tables[static_cast<int>(type)];
}

namespace ops {
namespace {

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  if (a.device() != b.device())
    fail("{}: tensors are on different devices ({} and {})", op, a.device().str(), b.device().str());
}

Tensor make_view(const Tensor& x, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = x.dtype();
  return Tensor(std::move(impl));
}

}  // namespace

// ---- views -------------------------------------------------------------------------------------

Tensor as_strided(const Tensor& x, const Shape& sizes, const Shape& strides, int64_t offset) {
  DL_CHECK(sizes.size() == strides.size(), "as_strided: sizes and strides differ in length");
  // bounds: the largest reachable element must lie inside the storage
  int64_t max_off = offset;
  bool empty_view = false;
  for (size_t i = 0; i < sizes.size(); ++i) {
    DL_CHECK(sizes[i] >= 0 && strides[i] >= 0, "as_strided: negative size or stride");
    if (sizes[i] == 0) empty_view = true;
    max_off += (sizes[i] - 1) * strides[i];
  }
  if (!empty_view && (offset < 0 || (max_off + 1) * x.element_size() > static_cast<int64_t>(x.storage()->nbytes())))
    fail("as_strided: view of shape {} strides {} offset {} exceeds its storage of {} bytes",
         shape_str(sizes), shape_str(strides), offset, x.storage()->nbytes());
  return make_view(x, sizes, strides, offset);
}

Tensor alias(const Tensor& x) { return make_view(x, x.sizes(), x.strides(), x.storage_offset()); }

Shape infer_size(const Shape& shape, int64_t numel) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail("shape {}: only one dimension can be -1", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      fail("shape {}: invalid size {}", shape_str(shape), shape[i]);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      fail("shape {} is invalid for input of size {}", shape_str(shape), numel);
    out[infer] = numel / known;
  } else if (known != numel) {
    fail("shape {} is invalid for input of size {}", shape_str(shape), numel);
  }
  return out;
}

namespace {
// Strides for viewing x as `shape` without a copy, if possible (PyTorch's computeStride).
bool compute_view_strides(const Shape& old_sizes, const Shape& old_strides, const Shape& shape, Shape& out) {
  out.assign(shape.size(), 0);
  if (old_sizes.empty()) {
    out = contiguous_strides(shape);
    return true;
  }
  int64_t numel = shape_numel(old_sizes);
  if (numel == 0) {
    out = contiguous_strides(shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = static_cast<int64_t>(old_sizes.size()) - 1; td >= 0; --td) {
    tensor_numel *= old_sizes[td];
    if (td == 0 || (old_sizes[td - 1] != 1 && old_strides[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (td > 0) {
        chunk_base_stride = old_strides[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}
}  // namespace

bool can_view(const Tensor& x, const Shape& shape) {
  Shape s = infer_size(shape, x.numel()), st;
  return compute_view_strides(x.sizes(), x.strides(), s, st);
}

Tensor view(const Tensor& x, Shape shape) {
  shape = infer_size(shape, x.numel());
  Shape st;
  if (!compute_view_strides(x.sizes(), x.strides(), shape, st))
    fail("view({}): size and strides {} of the input are not compatible with a view; use reshape()",
         shape_str(shape), shape_str(x.strides()));
  return make_view(x, shape, st, x.storage_offset());
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  int64_t n = x.dim();
  if (static_cast<int64_t>(dims.size()) != n)
    fail("permute: {} dims given for a tensor with {} dims", dims.size(), n);
  Shape sz(n), st(n);
  std::vector<bool> seen(n, false);
  for (int64_t i = 0; i < n; ++i) {
    int64_t d = wrap_dim(dims[i], n);
    if (seen[d]) fail("permute: dim {} repeated", d);
    seen[d] = true;
    sz[i] = x.sizes()[d];
    st[i] = x.strides()[d];
  }
  return make_view(x, sz, st, x.storage_offset());
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  int64_t n = x.dim();
  if (n == 0) return alias(x);
  d0 = wrap_dim(d0, n);
  d1 = wrap_dim(d1, n);
  Shape sz = x.sizes(), st = x.strides();
  std::swap(sz[d0], sz[d1]);
  std::swap(st[d0], st[d1]);
  return make_view(x, sz, st, x.storage_offset());
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  if (x.dim() == 0) fail("slice: cannot slice a 0-d tensor");
  dim = wrap_dim(dim, x.dim());
  if (step <= 0) fail("slice: step must be positive, got {}", step);
  int64_t n = x.sizes()[dim];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sz = x.sizes(), st = x.strides();
  sz[dim] = (end - start + step - 1) / step;
  st[dim] *= step;
  return make_view(x, sz, st, x.storage_offset() + start * x.strides()[dim]);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  if (x.dim() == 0) fail("select: cannot select from a 0-d tensor");
  dim = wrap_dim(dim, x.dim());
  int64_t n = x.sizes()[dim];
  if (index < -n || index >= n) fail("select: index {} out of range for dim {} of size {}", index, dim, n);
  if (index < 0) index += n;
  Shape sz = x.sizes(), st = x.strides();
  int64_t off = x.storage_offset() + index * st[dim];
  sz.erase(sz.begin() + dim);
  st.erase(st.begin() + dim);
  return make_view(x, sz, st, off);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  int64_t n = static_cast<int64_t>(shape.size());
  if (n < x.dim()) fail("expand: target {} has fewer dims than the tensor {}", shape_str(shape), shape_str(x.sizes()));
  Shape sz(n), st(n);
  for (int64_t i = n - 1; i >= 0; --i) {
    int64_t j = i - (n - x.dim());
    int64_t cur = j >= 0 ? x.sizes()[j] : 1;
    int64_t cst = j >= 0 ? x.strides()[j] : 0;
    int64_t want = shape[i];
    if (want == -1) {
      if (j < 0) fail("expand: -1 is not allowed for a new leading dim");
      want = cur;
    }
    if (cur == want) {
      sz[i] = cur;
      st[i] = cst;
    } else if (cur == 1) {
      sz[i] = want;
      st[i] = 0;
    } else {
      fail("expand: cannot expand {} to {} (dim {}: {} is not 1)", shape_str(x.sizes()), shape_str(shape), i, cur);
    }
  }
  return make_view(x, sz, st, x.storage_offset());
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return alias(x);
  dim = wrap_dim(dim, x.dim());
  if (x.sizes()[dim] != 1) return alias(x);
  Shape sz = x.sizes(), st = x.strides();
  sz.erase(sz.begin() + dim);
  st.erase(st.begin() + dim);
  return make_view(x, sz, st, x.storage_offset());
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim() + 1);
  Shape sz = x.sizes(), st = x.strides();
  int64_t s = dim < x.dim() ? sz[dim] * st[dim] : 1;
  sz.insert(sz.begin() + dim, 1);
  st.insert(st.begin() + dim, s);
  return make_view(x, sz, st, x.storage_offset());
}

// ---- copies -------------------------------------------------------------------------------------

void copy_(const Tensor& dst, const Tensor& src) {
  Tensor s = src;
  if (s.sizes() != dst.sizes()) s = expand(s, dst.sizes());
  if (dst.device() == s.device()) {
    KERNEL(dst.device(), copy)(dst, s);
    return;
  }
  // across devices: make a contiguous source of dst's dtype, move the bytes, then copy in place
  Tensor staged = contiguous(to_dtype(contiguous(s), dst.dtype()));
  if (dst.is_contiguous()) {
    copy_bytes(dst.raw_data(), dst.device(), staged.raw_data(), staged.device(),
               static_cast<size_t>(staged.numel() * staged.element_size()));
  } else {
    Tensor tmp = empty(dst.sizes(), {dst.dtype(), dst.device()});
    copy_bytes(tmp.raw_data(), tmp.device(), staged.raw_data(), staged.device(),
               static_cast<size_t>(staged.numel() * staged.element_size()));
    KERNEL(dst.device(), copy)(dst, tmp);
  }
}

void fill_(const Tensor& dst, double value) { KERNEL(dst.device(), fill)(dst, value); }

Tensor clone(const Tensor& x) {
  Tensor out = empty(x.sizes(), {x.dtype(), x.device()});
  copy_(out, x);
  return out;
}

Tensor contiguous(const Tensor& x) { return x.is_contiguous() ? x : clone(x); }

Tensor to_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = empty(x.sizes(), {dtype, x.device()});
  copy_(out, x);
  return out;
}

Tensor to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = empty(x.sizes(), {x.dtype(), device});
  copy_(out, x);
  return out;
}

// ---- elementwise --------------------------------------------------------------------------------

Tensor unary(UnaryOp op, const Tensor& x, const UnaryArgs& args) {
  check_computable(x.dtype(), op_name(op));
  if (!is_floating(x.dtype()) && !accepts_integers(op))
    fail("{}: needs a floating tensor, got {}", op_name(op), dtype_name(x.dtype()));
  Tensor out = empty(x.sizes(), {x.dtype(), x.device()});
  KERNEL(x.device(), unary)(op, out, x, args);
  return out;
}

Tensor pow_scalar(const Tensor& x, double exponent) {
  check_computable(x.dtype(), "pow");
  Tensor out = empty(x.sizes(), {x.dtype(), x.device()});
  KERNEL(x.device(), pow_scalar)(out, x, exponent);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "binary op");
  Shape shape = broadcast_shapes(a.sizes(), b.sizes());
  DType dt = promote_types(a.dtype(), b.dtype());
  check_computable(dt, op_name(op));  // bfloat16 with float32 (or float16) computes in float32
  Tensor ea = expand(to_dtype(a, dt), shape);
  Tensor eb = expand(to_dtype(b, dt), shape);
  if (op == BinaryOp::Div && !is_floating(dt)) {
    auto bv = to_dtype(b, DType::Int64).to_vector<int64_t>();
    if (std::find(bv.begin(), bv.end(), 0) != bv.end()) fail("integer division by zero");
  }
  Tensor out = empty(shape, {is_comparison(op) ? DType::UInt8 : dt, a.device()});
  KERNEL(a.device(), binary)(op, out, ea, eb);
  return out;
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double s) {
  Tensor st = empty({}, {a.dtype(), a.device()});
  fill_(st, s);
  return binary(op, a, st);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "where");
  check_same_device(cond, a, "where");
  if (cond.dtype() != DType::UInt8) fail("where: condition must be uint8 (a comparison result), got {}", dtype_name(cond.dtype()));
  Shape shape = broadcast_shapes(broadcast_shapes(cond.sizes(), a.sizes()), b.sizes());
  DType dt = promote_types(a.dtype(), b.dtype());
  Tensor out = empty(shape, {dt, a.device()});
  KERNEL(a.device(), where)(out, expand(cond, shape), expand(to_dtype(a, dt), shape), expand(to_dtype(b, dt), shape));
  return out;
}

void add_(const Tensor& a, const Tensor& b, double alpha) {
  check_same_device(a, b, "add_");
  check_computable(a.dtype(), "add_");
  Tensor eb = expand(to_dtype(b, a.dtype()), a.sizes());
  if (alpha != 1.0) eb = binary_scalar(BinaryOp::Mul, contiguous(eb), alpha);
  KERNEL(a.device(), binary)(BinaryOp::Add, a, a, eb);
}

void binary_(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "in-place binary op");
  check_computable(a.dtype(), op_name(op));
  if (is_comparison(op)) fail("in-place binary op: a comparison gives uint8 and cannot be written into {}", dtype_name(a.dtype()));
  Tensor eb = expand(to_dtype(b, a.dtype()), a.sizes());
  if (op == BinaryOp::Div && !is_floating(a.dtype())) {
    auto bv = to_dtype(b, DType::Int64).to_vector<int64_t>();
    if (std::find(bv.begin(), bv.end(), 0) != bv.end()) fail("integer division by zero");
  }
  KERNEL(a.device(), binary)(op, a, a, eb);
}

// ---- reductions ---------------------------------------------------------------------------------

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    out.resize(ndim);
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, ndim);
    if (std::find(out.begin(), out.end(), w) != out.end()) fail("reduction: dim {} given twice", d);
    out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
// Moves the reduced dims last and makes the result contiguous: (outer, reduced) rows.
struct Rows {
  Tensor data;
  int64_t rows, cols;
  Shape out_shape;  // keepdim or not, as asked
};
Rows to_rows(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  std::vector<int64_t> kept, perm;
  Shape out_shape;
  int64_t rows = 1, cols = 1;
  for (int64_t d = 0; d < x.dim(); ++d) {
    bool red = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (red) {
      cols *= x.sizes()[d];
      if (keepdim) out_shape.push_back(1);
    } else {
      kept.push_back(d);
      rows *= x.sizes()[d];
      out_shape.push_back(x.sizes()[d]);
    }
  }
  perm = kept;
  perm.insert(perm.end(), dims.begin(), dims.end());
  Tensor p = contiguous(permute(x, perm));
  return {p, rows, cols, out_shape};
}
}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  check_computable(x.dtype(), op_name(op));
  dims = normalize_dims(dims, x.dim());
  Rows r = to_rows(x, dims, keepdim);
  if (r.cols == 0 && (op == ReduceOp::Max || op == ReduceOp::Min))
    fail("max/min over an empty dimension of a tensor of shape {}", shape_str(x.sizes()));
  DType in_dt = x.dtype();
  if (!is_floating(in_dt)) {
    r.data = to_dtype(r.data, op == ReduceOp::Mean ? DType::Float64 : DType::Int64);
    in_dt = r.data.dtype();
  }
  Tensor out = empty(r.out_shape, {in_dt, x.device()});
  KERNEL(x.device(), reduce_rows)(op, out, r.data, r.rows, r.cols);
  return out;
}

std::pair<Tensor, Tensor> max_dim(const Tensor& x, int64_t dim, bool keepdim) {
  check_computable(x.dtype(), "max");
  dim = wrap_dim(dim, x.dim());
  Rows r = to_rows(x, {dim}, keepdim);
  if (r.cols == 0) fail("max over an empty dimension {} of shape {}", dim, shape_str(x.sizes()));
  Tensor values = empty(r.out_shape, {x.dtype(), x.device()});
  Tensor indices = empty(r.out_shape, {DType::Int64, x.device()});
  KERNEL(x.device(), max_rows)(values, indices, r.data, r.rows, r.cols);
  return {values, indices};
}

Tensor var(const Tensor& x, std::vector<int64_t> dims, bool unbiased, bool keepdim) {
  check_computable(x.dtype(), "var");
  if (!is_floating(x.dtype())) fail("var needs a floating tensor, got {}", dtype_name(x.dtype()));
  dims = normalize_dims(dims, x.dim());
  int64_t n = 1;
  for (int64_t d : dims) n *= x.sizes()[d];
  Tensor mean = reduce(ReduceOp::Mean, x, dims, true);
  Tensor centered = binary(BinaryOp::Sub, x, mean);
  Tensor sq = binary(BinaryOp::Mul, centered, centered);
  Tensor s = reduce(ReduceOp::Sum, sq, dims, keepdim);
  int64_t denom = unbiased ? n - 1 : n;
  return binary_scalar(BinaryOp::Div, s, static_cast<double>(denom));  // n-1 == 0 gives inf/nan as PyTorch
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.sizes() == shape) return x;
  int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  if (lead < 0) fail("sum_to: cannot reduce shape {} to {}", shape_str(x.sizes()), shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
    } else if (shape[i - lead] == 1 && x.sizes()[i] != 1) {
      dims.push_back(i);
    } else if (shape[i - lead] != x.sizes()[i]) {
      fail("sum_to: cannot reduce shape {} to {}", shape_str(x.sizes()), shape_str(shape));
    }
  }
  Tensor s = dims.empty() ? x : reduce(ReduceOp::Sum, x, dims, true);
  // drop the leading dims that were summed with keepdim
  return view(contiguous(s), shape);
}

// ---- linear algebra -----------------------------------------------------------------------------

namespace {
// A (.., r, c) operand is usable by bmm as is when it is row-major (unit column stride, row stride
// at least c) or column-major (unit row stride, column stride at least r): what a GEMM's leading
// dimension can express. Anything else (expanded rows with stride 0, odd strides) is copied.
Tensor gemm_ready(const Tensor& t) {
  int64_t n = t.dim();
  const auto& st = t.strides();
  const auto& sz = t.sizes();
  int64_t r = sz[n - 2], c = sz[n - 1];
  bool row_major = (st[n - 1] == 1 || c == 1) && (st[n - 2] >= c || r == 1);
  bool col_major = (st[n - 2] == 1 || r == 1) && (st[n - 1] >= r || c == 1);
  return (row_major || col_major) ? t : contiguous(t);
}
}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in, DType gemm_dtype) {
  check_same_device(a_in, b_in, "matmul");
  check_computable(a_in.dtype(), "matmul");
  check_computable(b_in.dtype(), "matmul");
  if (a_in.dim() == 0 || b_in.dim() == 0) fail("matmul: both operands need at least 1 dim");
  if (!is_floating(a_in.dtype()) || a_in.dtype() != b_in.dtype())
    fail("matmul: operands must share a floating dtype, got {} and {}", dtype_name(a_in.dtype()), dtype_name(b_in.dtype()));
  Tensor a = a_in.dim() == 1 ? unsqueeze(a_in, 0) : a_in;
  Tensor b = b_in.dim() == 1 ? unsqueeze(b_in, 1) : b_in;
  int64_t M = a.size(-2), K = a.size(-1), K2 = b.size(-2), N = b.size(-1);
  if (K != K2)
    fail("matmul: shapes {} and {} cannot be multiplied ({} != {})", shape_str(a_in.sizes()), shape_str(b_in.sizes()), K, K2);
  Shape ba(a.sizes().begin(), a.sizes().end() - 2), bb(b.sizes().begin(), b.sizes().end() - 2);
  Shape batch = broadcast_shapes(ba, bb);
  int64_t B = shape_numel(batch);
  Shape ea = batch, eb = batch;
  ea.insert(ea.end(), {M, K});
  eb.insert(eb.end(), {K, N});
  Tensor a3 = expand(a, ea), b3 = expand(b, eb);
  // flatten the batch dims: possible as a view unless the batch dims are oddly strided
  auto flat = [&](const Tensor& t, int64_t r, int64_t c) {
    Shape s{B, r, c};
    return can_view(t, s) ? view(t, s) : view(contiguous(t), s);
  };
  a3 = gemm_ready(flat(a3, M, K));
  b3 = gemm_ready(flat(b3, K, N));
  Tensor out = empty({B, M, N}, {a.dtype(), a.device()});
  KERNEL(a.device(), bmm)(out, a3, b3, a.dtype() == DType::Float32 ? gemm_dtype : DType::Float32);
  Shape out_shape = batch;
  if (a_in.dim() > 1) out_shape.push_back(M);
  if (b_in.dim() > 1) out_shape.push_back(N);
  return view(out, out_shape);
}

namespace {
struct ODI {
  int64_t outer, d, inner;
};
ODI split_dim(const Tensor& x, int64_t dim) {
  ODI r{1, x.sizes()[dim], 1};
  for (int64_t i = 0; i < dim; ++i) r.outer *= x.sizes()[i];
  for (int64_t i = dim + 1; i < x.dim(); ++i) r.inner *= x.sizes()[i];
  return r;
}
Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  check_computable(x.dtype(), log ? "log_softmax" : "softmax");
  if (!is_floating(x.dtype())) fail("softmax needs a floating tensor, got {}", dtype_name(x.dtype()));
  if (x.dim() == 0) return view(softmax_impl(unsqueeze(x, 0), 0, log), {});
  dim = wrap_dim(dim, x.dim());
  Tensor c = contiguous(x);
  ODI s = split_dim(c, dim);
  Tensor out = empty(x.sizes(), {x.dtype(), x.device()});
  KERNEL(x.device(), softmax)(out, c, s.outer, s.d, s.inner, log);
  return out;
}
Tensor softmax_bw_impl(const Tensor& grad, const Tensor& y, int64_t dim, bool log) {
  if (y.dim() == 0) return zeros_like(y);
  dim = wrap_dim(dim, y.dim());
  Tensor g = contiguous(grad), yc = contiguous(y);
  ODI s = split_dim(yc, dim);
  Tensor out = empty(y.sizes(), {y.dtype(), y.device()});
  KERNEL(y.device(), softmax_backward)(out, g, yc, s.outer, s.d, s.inner, log);
  return out;
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }
Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t dim) { return softmax_bw_impl(g, y, dim, false); }
Tensor log_softmax_backward(const Tensor& g, const Tensor& y, int64_t dim) { return softmax_bw_impl(g, y, dim, true); }

// ---- indexing -----------------------------------------------------------------------------------

namespace {
void check_index(const Tensor& index, const char* op) {
  if (index.dtype() != DType::Int64) fail("{}: index must be int64, got {}", op, dtype_name(index.dtype()));
}
}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index(index, "gather");
  check_computable(x.dtype(), "gather");
  check_same_device(x, index, "gather");
  dim = wrap_dim(dim, x.dim());
  if (index.dim() != x.dim()) fail("gather: index has {} dims, input has {}", index.dim(), x.dim());
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim && index.sizes()[d] > x.sizes()[d])
      fail("gather: index shape {} exceeds input shape {} at dim {}", shape_str(index.sizes()), shape_str(x.sizes()), d);
  Tensor out = empty(index.sizes(), {x.dtype(), x.device()});
  KERNEL(x.device(), gather)(out, x, dim, index);
  return out;
}

Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  check_index(index, "scatter_add");
  check_computable(src.dtype(), "scatter_add");
  dim = wrap_dim(dim, static_cast<int64_t>(shape.size()));
  Tensor out = zeros(shape, {src.dtype(), src.device()});
  KERNEL(src.device(), scatter_add)(out, dim, index, src);
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index(index, "index_select");
  check_computable(x.dtype(), "index_select");
  if (index.dim() != 1) fail("index_select: index must be 1-D, got shape {}", shape_str(index.sizes()));
  dim = wrap_dim(dim, x.dim());
  // expressed as a gather with the index broadcast over the other dims
  Shape idx_shape(x.dim(), 1);
  idx_shape[dim] = index.numel();
  Shape full_shape = x.sizes();
  full_shape[dim] = index.numel();
  Tensor idx = contiguous(expand(view(contiguous(index), idx_shape), full_shape));
  return gather(x, dim, idx);
}

Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  check_index(index, "index_add");
  check_computable(src.dtype(), "index_add");
  dim = wrap_dim(dim, static_cast<int64_t>(shape.size()));
  Shape idx_shape(shape.size(), 1);
  idx_shape[dim] = index.numel();
  Tensor idx = contiguous(expand(view(contiguous(index), idx_shape), src.sizes()));
  return scatter_add(shape, dim, idx, src);
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) fail("cat: no tensors given");
  const Tensor& first = xs[0];
  dim = wrap_dim(dim, first.dim());
  Shape shape = first.sizes();
  int64_t total = 0;
  DType dt = first.dtype();
  for (const auto& t : xs) {
    if (t.dim() != first.dim()) fail("cat: tensors have {} and {} dims", first.dim(), t.dim());
    check_same_device(first, t, "cat");
    for (int64_t d = 0; d < t.dim(); ++d)
      if (d != dim && t.sizes()[d] != shape[d])
        fail("cat: shapes {} and {} differ outside dim {}", shape_str(first.sizes()), shape_str(t.sizes()), dim);
    total += t.sizes()[dim];
    dt = promote_types(dt, t.dtype());
  }
  shape[dim] = total;
  Tensor out = empty(shape, {dt, first.device()});
  int64_t at = 0;
  for (const auto& t : xs) {
    int64_t n = t.sizes()[dim];
    if (n) copy_(slice(out, dim, at, at + n, 1), t);
    at += n;
  }
  return out;
}

}  // namespace ops
}  // namespace dl
