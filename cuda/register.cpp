// The CUDA row of the kernel table (tensor/dispatch.h): each entry unpacks its Tensors into the
// raw launch arguments of cuda/kernels.h. Conv, batch norm and GEMM go to cuDNN / cuBLAS or to the
// hand-written kernels as the backend switch says (cuda/cuda.h).
#include <array>
#include <vector>

#include "cuda/host.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace dl::cuda {

namespace host {

static_assert(static_cast<int>(DType::Float32) == k::F32 && static_cast<int>(DType::Float64) == k::F64 &&
                  static_cast<int>(DType::Int64) == k::I64 && static_cast<int>(DType::UInt8) == k::U8,
              "k::DT mirrors dl::DType");
static_assert(static_cast<int>(ops::UnaryOp::Sign) == 8 && static_cast<int>(ops::BinaryOp::Ge) == 11 &&
                  static_cast<int>(ops::ReduceOp::Min) == 3,
              "the .cu files number the ops as tensor/ops.h does");

k::DT dt_of(DType t) { return static_cast<k::DT>(static_cast<int>(t)); }

void check_device(const Tensor& t, const char* op) {
  if (!t.device().is_cuda()) fail("{}: expected a CUDA tensor, got one on {}", op, t.device().str());
  if (t.device().index != detail::current_device())
    fail("{}: tensor on {} but this backend runs on the current device cuda:{} (one GPU per process; choose it "
         "with CUDA_VISIBLE_DEVICES)",
         op, t.device().str(), detail::current_device());
}

k::Iter make_iter(std::initializer_list<const Tensor*> ts) {
  k::Iter it;
  it.nops = static_cast<int>(ts.size());
  DL_CHECK(it.nops >= 1 && it.nops <= k::kMaxOperands, "make_iter: {} operands", it.nops);
  const Tensor& first = **ts.begin();
  const Shape& shape = first.sizes();
  it.numel = shape_numel(shape);
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, k::kMaxOperands>> strides;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, k::kMaxOperands> s{};
    int op = 0;
    for (const Tensor* t : ts) s[op++] = t->strides()[d];
    sizes.push_back(shape[d]);
    strides.push_back(s);
  }
  // merge dim i into i + 1 when it is contiguous with it for every operand (as tensor/cpu/loops.h)
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i) {
    bool ok = true;
    for (int op = 0; op < it.nops; ++op) ok = ok && strides[i][op] == strides[i + 1][op] * sizes[i + 1];
    if (ok) {
      sizes[i] *= sizes[i + 1];
      strides[i] = strides[i + 1];
      sizes.erase(sizes.begin() + i + 1);
      strides.erase(strides.begin() + i + 1);
    }
  }
  if (static_cast<int>(sizes.size()) > k::kMaxDims)
    fail("CUDA elementwise op on shape {}: {} dims remain after merging contiguous ones; at most {} are supported "
         "(make the operands contiguous first)",
         shape_str(shape), sizes.size(), k::kMaxDims);
  it.ndim = static_cast<int>(sizes.size());
  for (int d = 0; d < it.ndim; ++d) {
    it.sizes[d] = sizes[d];
    for (int op = 0; op < it.nops; ++op) it.strides[op][d] = strides[d][op];
  }
  return it;
}

}  // namespace host

namespace {

using host::check_device;
using host::dt_of;
using host::make_iter;

// ---- elementwise ---------------------------------------------------------------------------------

void unary_kernel(ops::UnaryOp op, const Tensor& out, const Tensor& in) {
  check_device(out, "unary op");
  k::unary(static_cast<int>(op), dt_of(in.dtype()), out.raw_data(), in.raw_data(), make_iter({&out, &in}));
}

void pow_kernel(const Tensor& out, const Tensor& in, double e) {
  check_device(out, "pow");
  k::pow_scalar(dt_of(in.dtype()), out.raw_data(), in.raw_data(), e, make_iter({&out, &in}));
}

void binary_kernel(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  check_device(out, "binary op");
  k::binary(static_cast<int>(op), dt_of(a.dtype()), out.raw_data(), a.raw_data(), b.raw_data(),
            make_iter({&out, &a, &b}));
}

void where_kernel(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_device(out, "where");
  k::where(dt_of(out.dtype()), out.raw_data(), cond.raw_data(), a.raw_data(), b.raw_data(),
           make_iter({&out, &cond, &a, &b}));
}

void copy_kernel(const Tensor& dst, const Tensor& src) {
  check_device(dst, "copy");
  check_device(src, "copy");
  k::copy(dt_of(dst.dtype()), dt_of(src.dtype()), dst.raw_data(), src.raw_data(), make_iter({&dst, &src}));
}

void fill_kernel(const Tensor& dst, double value) {
  check_device(dst, "fill");
  k::fill(dt_of(dst.dtype()), dst.raw_data(), value, make_iter({&dst}));
}

// ---- reductions, softmax ---------------------------------------------------------------------------

void reduce_rows_kernel(ops::ReduceOp op, const Tensor& out, const Tensor& in, int64_t rows, int64_t cols) {
  check_device(in, "reduction");
  k::reduce_rows(static_cast<int>(op), dt_of(in.dtype()), out.raw_data(), in.raw_data(), rows, cols);
}

void max_rows_kernel(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t rows, int64_t cols) {
  check_device(in, "max");
  k::max_rows(dt_of(in.dtype()), values.raw_data(), indices.data_ptr<int64_t>(), in.raw_data(), rows, cols);
}

void softmax_kernel(const Tensor& out, const Tensor& in, int64_t outer, int64_t d, int64_t inner, bool log) {
  check_device(in, "softmax");
  k::softmax(dt_of(in.dtype()), out.raw_data(), in.raw_data(), outer, d, inner, log);
}

void softmax_backward_kernel(const Tensor& gin, const Tensor& gout, const Tensor& y, int64_t outer, int64_t d,
                             int64_t inner, bool log) {
  check_device(y, "softmax backward");
  k::softmax_backward(dt_of(y.dtype()), gin.raw_data(), gout.raw_data(), y.raw_data(), outer, d, inner, log);
}

// ---- gather / scatter ------------------------------------------------------------------------------

k::IndexGeom index_geom(const Tensor& index, const Tensor& data, const Tensor& other, int64_t dim, const char* op) {
  k::IndexGeom g;
  if (index.dim() > k::kMaxDims) fail("{} on CUDA: {} dims, at most {} supported", op, index.dim(), k::kMaxDims);
  if (index.dim() == 0) {  // a 0-d index: one element at position 0 of a 1-element dim
    g.ndim = 1;
    g.dim = 0;
    g.limit = data.dim() == 0 ? 1 : data.sizes()[0];
    g.sizes[0] = 1;
    return g;
  }
  g.ndim = static_cast<int>(index.dim());
  g.dim = static_cast<int>(dim);
  g.limit = data.sizes()[dim];
  for (int d = 0; d < g.ndim; ++d) {
    g.sizes[d] = index.sizes()[d];
    g.index_strides[d] = index.strides()[d];
    g.x_strides[d] = data.strides()[d];
    g.out_strides[d] = other.strides()[d];
  }
  return g;
}

void gather_kernel(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  check_device(out, "gather");
  k::IndexGeom g = index_geom(index, x, out, dim, "gather");
  int64_t bad = 0;
  if (!k::gather(dt_of(x.dtype()), out.raw_data(), x.raw_data(), index.data_ptr<int64_t>(), g, &bad))
    fail("gather: index {} is out of range for dim {} of size {}", bad, dim, g.limit);
}

void scatter_add_kernel(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  check_device(out, "scatter_add");
  k::IndexGeom g = index_geom(index, out, src, dim, "scatter_add");
  int64_t bad = 0;
  if (!k::scatter_add(dt_of(src.dtype()), out.raw_data(), index.data_ptr<int64_t>(), src.raw_data(), g, &bad))
    fail("scatter_add: index {} is out of range for dim {} of size {}", bad, dim, g.limit);
}

// ---- bmm -------------------------------------------------------------------------------------------

// How a (B, R, C) operand is laid out for the GEMM: row-major with row stride ld, or (trans) the
// transpose of a row-major (C, R) matrix. Returns false when neither describes it (a copy is needed).
bool gemm_layout(const Tensor& t, bool& trans, int64_t& ld) {
  const int64_t R = t.sizes()[1], C = t.sizes()[2];
  const int64_t sr = t.strides()[1], sc = t.strides()[2];
  if ((sc == 1 || C == 1) && (R == 1 || sr >= std::max<int64_t>(C, 1))) {
    trans = false;
    ld = R == 1 ? std::max<int64_t>(C, 1) : sr;
    return true;
  }
  if ((sr == 1 || R == 1) && (C == 1 || sc >= std::max<int64_t>(R, 1))) {
    trans = true;
    ld = C == 1 ? std::max<int64_t>(R, 1) : sc;
    return true;
  }
  return false;
}

void bmm_kernel(const Tensor& out, const Tensor& a_in, const Tensor& b_in) {
  check_device(out, "matmul");
  Tensor a = a_in, b = b_in;
  bool ta = false, tb = false;
  int64_t lda = 0, ldb = 0;
  if (!gemm_layout(a, ta, lda)) {
    a = ops::contiguous(ops::clone(a));
    gemm_layout(a, ta, lda);
  }
  if (!gemm_layout(b, tb, ldb)) {
    b = ops::contiguous(ops::clone(b));
    gemm_layout(b, tb, ldb);
  }
  const int64_t B = a.sizes()[0], M = a.sizes()[1], K = a.sizes()[2], N = b.sizes()[2];
  const int64_t sa = B == 1 ? 0 : a.strides()[0], sb = B == 1 ? 0 : b.strides()[0];
  host::gemm(a.dtype(), ta, tb, M, N, K, 1.0, a.raw_data(), lda, sa, b.raw_data(), ldb, sb, 0.0, out.raw_data(),
             std::max<int64_t>(N, 1), M * N, B);
}

// ---- NN kernels --------------------------------------------------------------------------------------

bool library(OpFamily f) { return get_backend(f) == Backend::Library; }

void conv2d_forward_kernel(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                           const ops::Conv2dParams& p) {
  check_device(out, "conv2d");
  if (library(OpFamily::Conv) && host::cudnn_conv2d_forward(out, x, w, bias, p)) return;
  host::conv2d_forward_handwritten(out, x, w, bias, p);
}

void conv2d_backward_input_kernel(const Tensor& gx, const Tensor& gout, const Tensor& w, const ops::Conv2dParams& p) {
  check_device(gx, "conv2d backward");
  if (library(OpFamily::Conv) && host::cudnn_conv2d_backward_input(gx, gout, w, p)) return;
  host::conv2d_backward_input_handwritten(gx, gout, w, p);
}

void conv2d_backward_weight_kernel(const Tensor& gw, const Tensor& gout, const Tensor& x, const ops::Conv2dParams& p) {
  check_device(gw, "conv2d backward");
  if (library(OpFamily::Conv) && host::cudnn_conv2d_backward_weight(gw, gout, x, p)) return;
  host::conv2d_backward_weight_handwritten(gw, gout, x, p);
}

void conv2d_backward_bias_kernel(const Tensor& gb, const Tensor& gout) {
  check_device(gb, "conv2d backward");
  const auto& s = gout.sizes();
  k::channel_sum(dt_of(gb.dtype()), gb.raw_data(), gout.raw_data(), s[0], s[1], s[2] * s[3]);
}

const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
void* mut_ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

struct NCS {
  int64_t N, C, S;
};
NCS ncs_of(const Tensor& x) {
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.sizes()[d];
  return {x.sizes()[0], x.sizes()[1], S};
}

void batch_norm_forward_kernel(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, bool training, double momentum, double eps) {
  check_device(out, "batch_norm");
  if (library(OpFamily::BatchNorm) &&
      host::cudnn_batch_norm_forward(out, mean, invstd, x, weight, bias, running_mean, running_var, training, momentum,
                                     eps))
    return;
  const NCS d = ncs_of(x);
  k::batch_norm_forward(dt_of(x.dtype()), out.raw_data(), mean.raw_data(), invstd.raw_data(), x.raw_data(),
                        ptr_or_null(weight), ptr_or_null(bias), mut_ptr_or_null(running_mean),
                        mut_ptr_or_null(running_var), d.N, d.C, d.S, training, momentum, eps);
}

void batch_norm_backward_kernel(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                                const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                const Tensor& invstd, bool training) {
  check_device(x, "batch_norm backward");
  if (library(OpFamily::BatchNorm) &&
      host::cudnn_batch_norm_backward(grad_x, grad_w, grad_b, grad_out, x, weight, mean, invstd, training))
    return;
  const NCS d = ncs_of(x);
  k::batch_norm_backward(dt_of(x.dtype()), mut_ptr_or_null(grad_x), mut_ptr_or_null(grad_w), mut_ptr_or_null(grad_b),
                         grad_out.raw_data(), x.raw_data(), ptr_or_null(weight), mean.raw_data(), invstd.raw_data(),
                         d.N, d.C, d.S, training);
}

k::PoolGeom pool_geom(const Tensor& in, const Tensor& out, const ops::Pool2dParams* p) {
  k::PoolGeom g{};
  g.planes = in.sizes()[0] * in.sizes()[1];
  g.H = in.sizes()[2];
  g.W = in.sizes()[3];
  g.Ho = out.sizes()[2];
  g.Wo = out.sizes()[3];
  if (p) {
    g.kh = p->kernel[0];
    g.kw = p->kernel[1];
    g.sh = p->stride[0];
    g.sw = p->stride[1];
    g.ph = p->padding[0];
    g.pw = p->padding[1];
    g.count_include_pad = p->count_include_pad;
  }
  return g;
}

void max_pool2d_forward_kernel(const Tensor& out, const Tensor& indices, const Tensor& x, const ops::Pool2dParams& p) {
  check_device(out, "max_pool2d");
  k::max_pool2d_forward(dt_of(x.dtype()), out.raw_data(), indices.data_ptr<int64_t>(), x.raw_data(),
                        pool_geom(x, out, &p));
}

void max_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const Tensor& indices) {
  check_device(gx, "max_pool2d backward");
  k::max_pool2d_backward(dt_of(gx.dtype()), gx.raw_data(), gout.raw_data(), indices.data_ptr<int64_t>(),
                         pool_geom(gx, gout, nullptr));
}

void avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x, const ops::Pool2dParams& p) {
  check_device(out, "avg_pool2d");
  k::avg_pool2d_forward(dt_of(x.dtype()), out.raw_data(), x.raw_data(), pool_geom(x, out, &p));
}

void avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout, const ops::Pool2dParams& p) {
  check_device(gx, "avg_pool2d backward");
  k::avg_pool2d_backward(dt_of(gx.dtype()), gx.raw_data(), gout.raw_data(), pool_geom(gx, gout, &p));
}

void adaptive_avg_pool2d_forward_kernel(const Tensor& out, const Tensor& x) {
  check_device(out, "adaptive_avg_pool2d");
  k::adaptive_avg_pool2d_forward(dt_of(x.dtype()), out.raw_data(), x.raw_data(), pool_geom(x, out, nullptr));
}

void adaptive_avg_pool2d_backward_kernel(const Tensor& gx, const Tensor& gout) {
  check_device(gx, "adaptive_avg_pool2d backward");
  k::adaptive_avg_pool2d_backward(dt_of(gx.dtype()), gx.raw_data(), gout.raw_data(), pool_geom(gx, gout, nullptr));
}

void cross_entropy_forward_kernel(const Tensor& losses, const Tensor& logits, const Tensor& target,
                                  const Tensor& weight, double ls) {
  check_device(logits, "cross_entropy");
  k::cross_entropy_forward(dt_of(logits.dtype()), losses.raw_data(), logits.raw_data(), target.data_ptr<int64_t>(),
                           ptr_or_null(weight), logits.sizes()[0], logits.sizes()[1], ls);
}

void cross_entropy_backward_kernel(const Tensor& grad, const Tensor& grad_losses, const Tensor& logits,
                                   const Tensor& target, const Tensor& weight, double ls) {
  check_device(logits, "cross_entropy backward");
  k::cross_entropy_backward(dt_of(logits.dtype()), grad.raw_data(), grad_losses.raw_data(), logits.raw_data(),
                            target.data_ptr<int64_t>(), ptr_or_null(weight), logits.sizes()[0], logits.sizes()[1],
                            ls);
}

}  // namespace

void register_cuda_kernels(KernelTable& t) {
  t.unary = unary_kernel;
  t.pow_scalar = pow_kernel;
  t.binary = binary_kernel;
  t.where = where_kernel;
  t.copy = copy_kernel;
  t.fill = fill_kernel;
  t.reduce_rows = reduce_rows_kernel;
  t.max_rows = max_rows_kernel;
  t.bmm = bmm_kernel;
  t.softmax = softmax_kernel;
  t.softmax_backward = softmax_backward_kernel;
  t.gather = gather_kernel;
  t.scatter_add = scatter_add_kernel;
  t.conv2d_forward = conv2d_forward_kernel;
  t.conv2d_backward_input = conv2d_backward_input_kernel;
  t.conv2d_backward_weight = conv2d_backward_weight_kernel;
  t.conv2d_backward_bias = conv2d_backward_bias_kernel;
  t.batch_norm_forward = batch_norm_forward_kernel;
  t.batch_norm_backward = batch_norm_backward_kernel;
  t.max_pool2d_forward = max_pool2d_forward_kernel;
  t.max_pool2d_backward = max_pool2d_backward_kernel;
  t.avg_pool2d_forward = avg_pool2d_forward_kernel;
  t.avg_pool2d_backward = avg_pool2d_backward_kernel;
  t.adaptive_avg_pool2d_forward = adaptive_avg_pool2d_forward_kernel;
  t.adaptive_avg_pool2d_backward = adaptive_avg_pool2d_backward_kernel;
  t.cross_entropy_forward = cross_entropy_forward_kernel;
  t.cross_entropy_backward = cross_entropy_backward_kernel;
}

}  // namespace dl::cuda
