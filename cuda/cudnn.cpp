// cuDNN paths for convolution (forward, backward data, backward filter) and batch norm.
//
// Convolution algorithms are chosen once per (direction, shape, storage dtype, TF32 switch) by timing
// every candidate with cudnnFind*AlgorithmEx on the real buffers, and cached; the search's and the
// run's workspace come from the caching allocator. Without TF32, float convolutions are restricted
// to FMA kernels (CUDNN_FMA_MATH), so results match the CPU to float rounding. Under autocast the
// operands are bfloat16/float16 buffers and the math is float32 on tensor cores (below).
// Every function returns false when cuDNN cannot take the case; the caller runs hand-written.
#include <climits>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "cuda/host.h"
#include "tensor/error.h"
#include "tensor/ops.h"

#ifdef DL_WITH_CUDNN
#include <cudnn.h>

#define DL_CUDNN_CHECK(expr)                                                                               \
  do {                                                                                                     \
    cudnnStatus_t dl_st_ = (expr);                                                                         \
    if (dl_st_ != CUDNN_STATUS_SUCCESS)                                                                    \
      ::dl::cuda::detail::throw_library_error("cuDNN", static_cast<int>(dl_st_), cudnnGetErrorString(dl_st_), \
                                              #expr, __FILE__, __LINE__);                                  \
  } while (0)
#endif

namespace dl::cuda::host {

#ifndef DL_WITH_CUDNN

bool cudnn_conv2d_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  return false;
}
bool cudnn_conv2d_backward_input(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) { return false; }
bool cudnn_conv2d_backward_weight(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) { return false; }
bool cudnn_batch_norm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, bool, double, double) {
  return false;
}
bool cudnn_batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, const Tensor&, bool) {
  return false;
}
size_t cudnn_algorithm_cache_size() { return 0; }

#else

namespace {

constexpr size_t kMaxSearchWorkspace = size_t(1) << 30;

cudnnHandle_t handle() {
  // one per host thread; never destroyed (see blas.cpp)
  thread_local cudnnHandle_t h = [] {
    cudnnHandle_t hh = nullptr;
    DL_CUDNN_CHECK(cudnnCreate(&hh));
    return hh;
  }();
  DL_CUDNN_CHECK(cudnnSetStream(h, detail::current_stream()));
  return h;
}

cudnnDataType_t type_of(DType t) {
  switch (t) {
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    case DType::Float16: return CUDNN_DATA_HALF;
    default: return CUDNN_DATA_FLOAT;
  }
}

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(DType t, int64_t n, int64_t c, int64_t h, int64_t w) {
    DL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    DL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, type_of(t), static_cast<int>(n),
                                              static_cast<int>(c), static_cast<int>(h), static_cast<int>(w)));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(DType t, const Shape& w) {
    DL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    DL_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, type_of(t), CUDNN_TENSOR_NCHW, static_cast<int>(w[0]),
                                              static_cast<int>(w[1]), static_cast<int>(w[2]), static_cast<int>(w[3])));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(DType t, const Conv2dParams& p, cudnnMathType_t math) {
    DL_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    DL_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        d, static_cast<int>(p.padding[0]), static_cast<int>(p.padding[1]), static_cast<int>(p.stride[0]),
        static_cast<int>(p.stride[1]), static_cast<int>(p.dilation[0]), static_cast<int>(p.dilation[1]),
        CUDNN_CROSS_CORRELATION, type_of(t)));
    DL_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, static_cast<int>(p.groups)));
    DL_CUDNN_CHECK(cudnnSetConvolutionMathType(d, math));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

bool fits_int(const Tensor& t) {
  if (t.numel() > INT_MAX) return false;
  for (int64_t s : t.sizes())
    if (s > INT_MAX) return false;
  return true;
}

// ---- the algorithm cache ----------------------------------------------------------------------

enum class Dir { Forward, BackwardData, BackwardFilter };

struct ConvKey {
  int dir, dtype, tf32;
  int64_t v[15];
  bool operator==(const ConvKey& o) const {
    if (dir != o.dir || dtype != o.dtype || tf32 != o.tf32) return false;
    for (int i = 0; i < 15; ++i)
      if (v[i] != o.v[i]) return false;
    return true;
  }
};
struct ConvKeyHash {
  size_t operator()(const ConvKey& k) const {
    size_t h = static_cast<size_t>(k.dir * 31 + k.dtype * 7 + k.tf32);
    for (int64_t x : k.v) h = h * 1000003u ^ static_cast<size_t>(x);
    return h;
  }
};

struct Choice {
  bool usable = false;
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

struct AlgoCache {
  std::mutex mu;
  std::unordered_map<ConvKey, Choice, ConvKeyHash> map;
};
AlgoCache& cache() {
  static AlgoCache* c = new AlgoCache;  // never destroyed
  return *c;
}

// dtype: the storage type (autocast's 16-bit one has searches of its own)
ConvKey key_of(Dir dir, const Shape& x, DType dtype, const Shape& w, const Conv2dParams& p, bool tf32) {
  return {static_cast<int>(dir),
          static_cast<int>(dtype),
          tf32 ? 1 : 0,
          {x[0], x[1], x[2], x[3], w[0], w[2], w[3], p.stride[0], p.stride[1], p.padding[0], p.padding[1],
           p.dilation[0], p.dilation[1], p.groups, w[1]}};
}

bool tf32_on(DType t) { return t == DType::Float32 && allow_tf32(); }
cudnnMathType_t search_math(DType t) {
  if (t != DType::Float32) return CUDNN_DEFAULT_MATH;
  return allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

// Picks the fastest successful algorithm of a Find search (results come sorted by time).
template <typename Perf>
Choice pick(const Perf* perf, int n, size_t limit, DType t) {
  for (int i = 0; i < n; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
    if (t == DType::Float32 && !allow_tf32() && perf[i].mathType == CUDNN_TENSOR_OP_MATH) continue;
    return {true, static_cast<int>(perf[i].algo), perf[i].mathType, perf[i].memory};
  }
  return {};
}

struct Scalars {
  float f1 = 1.f, f0 = 0.f;
  double d1 = 1.0, d0 = 0.0;
  const void* one(DType t) const { return t == DType::Float64 ? static_cast<const void*>(&d1) : &f1; }
  const void* zero(DType t) const { return t == DType::Float64 ? static_cast<const void*>(&d0) : &f0; }
};
const Scalars kScalars;

// Looks up or searches the algorithm for a key; `search` runs the Find call with a workspace.
template <typename SizeFn, typename FindFn>
Choice choose(const ConvKey& key, int algo_count, DType t, SizeFn workspace_size, FindFn search) {
  {
    std::lock_guard<std::mutex> lock(cache().mu);
    auto it = cache().map.find(key);
    if (it != cache().map.end()) return it->second;
  }
  size_t most = 0;
  for (int a = 0; a < algo_count; ++a) {
    size_t sz = 0;
    if (workspace_size(a, &sz) == CUDNN_STATUS_SUCCESS && sz <= kMaxSearchWorkspace) most = std::max(most, sz);
  }
  detail::Workspace ws(most);
  Choice c = search(ws.ptr, most);
  std::lock_guard<std::mutex> lock(cache().mu);
  cache().map[key] = c;
  return c;
}

}  // namespace

size_t cudnn_algorithm_cache_size() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().map.size();
}

namespace {

// The convolution in cuDNN's terms: storage type st of x, w, y (and their gradients), compute type
// ct (st itself, or Float32 for autocast's 16-bit storage), raw buffers. false: cuDNN takes no algorithm.
struct ConvIo {
  DType st, ct;
  bool lowp() const { return st != ct; }
};

cudnnMathType_t search_math(const ConvIo& io) {
  if (io.lowp()) return CUDNN_TENSOR_OP_MATH;  // autocast: tensor cores, float32 sums
  return search_math(io.st);
}

bool conv_forward_core(const ConvIo& io, const Shape& xs, const void* x, const Shape& wsz, const void* w,
                       const Shape& os, void* y, const Conv2dParams& p) {
  cudnnHandle_t h = handle();
  TensorDesc xd(io.st, xs[0], xs[1], xs[2], xs[3]), yd(io.st, os[0], os[1], os[2], os[3]);
  FilterDesc wd(io.st, wsz);
  ConvDesc cd(io.ct, p, search_math(io));
  const ConvKey key = key_of(Dir::Forward, xs, io.st, wsz, p, tf32_on(io.st));
  const Choice c = choose(
      key, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, io.st,
      [&](int a, size_t* sz) {
        return cudnnGetConvolutionForwardWorkspaceSize(h, xd.d, wd.d, cd.d, yd.d, static_cast<cudnnConvolutionFwdAlgo_t>(a), sz);
      },
      [&](void* ws, size_t wsz_bytes) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        int n = 0;
        const cudnnStatus_t found = cudnnFindConvolutionForwardAlgorithmEx(
            h, xd.d, x, wd.d, w, cd.d, yd.d, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf, ws, wsz_bytes);
        if (found != CUDNN_STATUS_SUCCESS && io.lowp()) return Choice{};  // no such 16-bit configuration here
        DL_CUDNN_CHECK(found);
        return pick(perf, n, wsz_bytes, io.st);
      });
  if (!c.usable) return false;
  DL_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  detail::Workspace ws(c.workspace);
  DL_CUDNN_CHECK(cudnnConvolutionForward(h, kScalars.one(io.ct), xd.d, x, wd.d, w, cd.d,
                                         static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws.ptr, c.workspace,
                                         kScalars.zero(io.ct), yd.d, y));
  return true;
}

bool conv_backward_data_core(const ConvIo& io, const Shape& xs, void* dx, const Shape& wsz, const void* w,
                             const Shape& os, const void* dy, const Conv2dParams& p) {
  cudnnHandle_t h = handle();
  TensorDesc dxd(io.st, xs[0], xs[1], xs[2], xs[3]), dyd(io.st, os[0], os[1], os[2], os[3]);
  FilterDesc wd(io.st, wsz);
  ConvDesc cd(io.ct, p, search_math(io));
  const ConvKey key = key_of(Dir::BackwardData, xs, io.st, wsz, p, tf32_on(io.st));
  const Choice c = choose(
      key, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, io.st,
      [&](int a, size_t* sz) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, wd.d, dyd.d, cd.d, dxd.d,
                                                            static_cast<cudnnConvolutionBwdDataAlgo_t>(a), sz);
      },
      [&](void* ws, size_t wsz_bytes) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        int n = 0;
        const cudnnStatus_t found = cudnnFindConvolutionBackwardDataAlgorithmEx(
            h, wd.d, w, dyd.d, dy, cd.d, dxd.d, dx, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf, ws, wsz_bytes);
        if (found != CUDNN_STATUS_SUCCESS && io.lowp()) return Choice{};  // no such 16-bit configuration here
        DL_CUDNN_CHECK(found);
        return pick(perf, n, wsz_bytes, io.st);
      });
  if (!c.usable) return false;
  DL_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  detail::Workspace ws(c.workspace);
  DL_CUDNN_CHECK(cudnnConvolutionBackwardData(h, kScalars.one(io.ct), wd.d, w, dyd.d, dy, cd.d,
                                              static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws.ptr, c.workspace,
                                              kScalars.zero(io.ct), dxd.d, dx));
  return true;
}

bool conv_backward_filter_core(const ConvIo& io, const Shape& xs, const void* x, const Shape& wsz, void* dw,
                               const Shape& os, const void* dy, const Conv2dParams& p) {
  cudnnHandle_t h = handle();
  TensorDesc xd(io.st, xs[0], xs[1], xs[2], xs[3]), dyd(io.st, os[0], os[1], os[2], os[3]);
  FilterDesc dwd(io.st, wsz);
  ConvDesc cd(io.ct, p, search_math(io));
  const ConvKey key = key_of(Dir::BackwardFilter, xs, io.st, wsz, p, tf32_on(io.st));
  const Choice c = choose(
      key, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, io.st,
      [&](int a, size_t* sz) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd.d, dyd.d, cd.d, dwd.d,
                                                              static_cast<cudnnConvolutionBwdFilterAlgo_t>(a), sz);
      },
      [&](void* ws, size_t wsz_bytes) {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        int n = 0;
        const cudnnStatus_t found = cudnnFindConvolutionBackwardFilterAlgorithmEx(
            h, xd.d, x, dyd.d, dy, cd.d, dwd.d, dw, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf, ws, wsz_bytes);
        if (found != CUDNN_STATUS_SUCCESS && io.lowp()) return Choice{};  // no such 16-bit configuration here
        DL_CUDNN_CHECK(found);
        return pick(perf, n, wsz_bytes, io.st);
      });
  if (!c.usable) return false;
  DL_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  detail::Workspace ws(c.workspace);
  DL_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, kScalars.one(io.ct), xd.d, x, dyd.d, dy, cd.d,
                                                static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws.ptr,
                                                c.workspace, kScalars.zero(io.ct), dwd.d, dw));
  return true;
}

// Autocast: a float32 tensor rounded into a 16-bit buffer of p.gemm_dtype.
struct Lowp {
  detail::Workspace buf;
  Lowp(DType to, const Tensor& t) : buf(static_cast<size_t>(t.numel()) * 2) {
    k::round_operand(to, false, buf.ptr, static_cast<const float*>(t.raw_data()), 1, 1, t.numel(), 0, 0, 1);
  }
  explicit Lowp(int64_t numel) : buf(static_cast<size_t>(numel) * 2) {}
};

bool autocast_case(const Conv2dParams& p) { return p.gemm_dtype == DType::BFloat16 || p.gemm_dtype == DType::Float16; }

}  // namespace

// Under autocast (p.gemm_dtype BFloat16 / Float16) the operands are rounded into 16-bit buffers and
// cuDNN runs them with float32 compute (PSEUDO_BFLOAT16 / PSEUDO_HALF configurations) on tensor
// cores. cuDNN's legacy API writes its output in the operands' type, so the result is widened back
// to float32 by a kernel: these outputs carry one more rounding (to the 16-bit type) than the
// hand-written path's (docs/cuda.md, "Mixed precision").
bool cudnn_conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Conv2dParams& p) {
  if (!fits_int(x) || !fits_int(out) || !fits_int(w)) return false;
  const DType t = x.dtype();
  const auto& os = out.sizes();
  if (autocast_case(p)) {
    const Lowp x16(p.gemm_dtype, x), w16(p.gemm_dtype, w), y16(out.numel());
    if (!conv_forward_core({p.gemm_dtype, DType::Float32}, x.sizes(), x16.buf.ptr, w.sizes(), w16.buf.ptr, os,
                           y16.buf.ptr, p))
      return false;
    k::widen_to_float(p.gemm_dtype, static_cast<float*>(out.raw_data()), y16.buf.ptr, out.numel());
  } else if (!conv_forward_core({t, t}, x.sizes(), x.raw_data(), w.sizes(), w.raw_data(), os, out.raw_data(), p)) {
    return false;
  }
  if (bias.defined()) {
    TensorDesc yd(t, os[0], os[1], os[2], os[3]), bd(t, 1, os[1], 1, 1);
    DL_CUDNN_CHECK(
        cudnnAddTensor(handle(), kScalars.one(t), bd.d, bias.raw_data(), kScalars.one(t), yd.d, out.raw_data()));
  }
  return true;
}

bool cudnn_conv2d_backward_input(const Tensor& gx, const Tensor& gout, const Tensor& w, const Conv2dParams& p) {
  if (!fits_int(gx) || !fits_int(gout) || !fits_int(w)) return false;
  const DType t = gx.dtype();
  if (autocast_case(p)) {
    const Lowp w16(p.gemm_dtype, w), dy16(p.gemm_dtype, gout), dx16(gx.numel());
    if (!conv_backward_data_core({p.gemm_dtype, DType::Float32}, gx.sizes(), dx16.buf.ptr, w.sizes(), w16.buf.ptr,
                                 gout.sizes(), dy16.buf.ptr, p))
      return false;
    k::widen_to_float(p.gemm_dtype, static_cast<float*>(gx.raw_data()), dx16.buf.ptr, gx.numel());
    return true;
  }
  return conv_backward_data_core({t, t}, gx.sizes(), gx.raw_data(), w.sizes(), w.raw_data(), gout.sizes(),
                                 gout.raw_data(), p);
}

bool cudnn_conv2d_backward_weight(const Tensor& gw, const Tensor& gout, const Tensor& x, const Conv2dParams& p) {
  if (!fits_int(gw) || !fits_int(gout) || !fits_int(x)) return false;
  const DType t = x.dtype();
  if (autocast_case(p)) {
    const Lowp x16(p.gemm_dtype, x), dy16(p.gemm_dtype, gout), dw16(gw.numel());
    if (!conv_backward_filter_core({p.gemm_dtype, DType::Float32}, x.sizes(), x16.buf.ptr, gw.sizes(), dw16.buf.ptr,
                                   gout.sizes(), dy16.buf.ptr, p))
      return false;
    k::widen_to_float(p.gemm_dtype, static_cast<float*>(gw.raw_data()), dw16.buf.ptr, gw.numel());
    return true;
  }
  return conv_backward_filter_core({t, t}, x.sizes(), x.raw_data(), gw.sizes(), gw.raw_data(), gout.sizes(),
                                   gout.raw_data(), p);
}

// ---- batch norm ---------------------------------------------------------------------------------

namespace {
struct BnDescs {
  TensorDesc x;
  cudnnTensorDescriptor_t bn = nullptr;
  BnDescs(DType t, int64_t N, int64_t C, int64_t S) : x(t, N, C, S, 1) {
    DL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bn));
    DL_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(bn, x.d, CUDNN_BATCHNORM_SPATIAL));
  }
  ~BnDescs() { cudnnDestroyTensorDescriptor(bn); }
};

bool bn_fits(const Tensor& x) {
  if (!fits_int(x)) return false;
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.sizes()[d];
  return S <= INT_MAX;
}

int64_t spatial(const Tensor& x) {
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.sizes()[d];
  return S;
}

Tensor or_filled(const Tensor& t, int64_t C, const Tensor& like, double value) {
  return t.defined() ? t : full({C}, value, {like.dtype(), like.device()});
}

// The eps of the cuDNN training forward that produced each saved invstd.
//
// cudnnBatchNormalizationBackward takes eps and requires the forward's ("the same epsilon value
// should be used in forward and backward functions"), but the kernel table's backward carries no
// eps: the CPU and the hand-written kernels need only the saved invstd = 1 / sqrt(var + eps). So
// the cuDNN forward records its eps against the invstd it wrote, and the backward runs cuDNN only
// for statistics it finds here, passing that eps. Anything else (a hand-written forward, an eps
// below CUDNN_BN_MIN_EPSILON, statistics made elsewhere) goes to the hand-written backward, which
// honours any eps through invstd. Entries are keyed by the live Storage (a weak_ptr), so a freed
// Storage, or a new one at a reused address, never matches.
class SavedBnEps {
 public:
  void record(const Tensor& invstd, double eps) {
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= next_prune_) {
      for (auto it = map_.begin(); it != map_.end();) it = it->second.storage.expired() ? map_.erase(it) : std::next(it);
      next_prune_ = 2 * map_.size() + 64;
    }
    map_[invstd.storage().get()] = {invstd.storage(), eps};
  }
  std::optional<double> find(const Tensor& invstd) {
    std::lock_guard<std::mutex> lock(mu_);
    const Storage* key = invstd.storage().get();
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    if (it->second.storage.lock().get() != key) {
      map_.erase(it);
      return std::nullopt;
    }
    return it->second.eps;
  }

 private:
  struct Entry {
    std::weak_ptr<Storage> storage;
    double eps;
  };
  std::mutex mu_;
  std::unordered_map<const Storage*, Entry> map_;
  size_t next_prune_ = 64;
};

SavedBnEps& saved_bn_eps() {
  static SavedBnEps* s = new SavedBnEps;  // never destroyed: tensors may outlive statics
  return *s;
}
}  // namespace

bool cudnn_batch_norm_forward(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, bool training, double momentum, double eps) {
  if (eps < CUDNN_BN_MIN_EPSILON || !bn_fits(x)) return false;
  const DType t = x.dtype();
  const int64_t N = x.sizes()[0], C = x.sizes()[1], S = spatial(x);
  cudnnHandle_t h = handle();
  BnDescs d(t, N, C, S);
  const Tensor w = or_filled(weight, C, x, 1.0), b = or_filled(bias, C, x, 0.0);
  if (training) {
    DL_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
        h, CUDNN_BATCHNORM_SPATIAL, kScalars.one(t), kScalars.zero(t), d.x.d, x.raw_data(), d.x.d, out.raw_data(),
        d.bn, w.raw_data(), b.raw_data(), momentum, running_mean.defined() ? running_mean.raw_data() : nullptr,
        running_var.defined() ? running_var.raw_data() : nullptr, eps, mean.raw_data(), invstd.raw_data()));
    saved_bn_eps().record(invstd, eps);
  } else {
    DL_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
        h, CUDNN_BATCHNORM_SPATIAL, kScalars.one(t), kScalars.zero(t), d.x.d, x.raw_data(), d.x.d, out.raw_data(),
        d.bn, w.raw_data(), b.raw_data(), running_mean.raw_data(), running_var.raw_data(), eps));
    k::batch_norm_eval_stats(t, mean.raw_data(), invstd.raw_data(), running_mean.raw_data(),
                             running_var.raw_data(), C, eps);
  }
  return true;
}

bool cudnn_batch_norm_backward(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                               const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                               const Tensor& invstd, bool training) {
  // cuDNN's backward is the training formula (through the batch statistics) only, and it must get
  // the forward's eps: only statistics saved by the cuDNN forward qualify (SavedBnEps above)
  if (!training || !bn_fits(x)) return false;
  const std::optional<double> eps = saved_bn_eps().find(invstd);
  if (!eps || *eps < CUDNN_BN_MIN_EPSILON) return false;
  const DType t = x.dtype();
  const int64_t N = x.sizes()[0], C = x.sizes()[1], S = spatial(x);
  cudnnHandle_t h = handle();
  BnDescs d(t, N, C, S);
  const Tensor w = or_filled(weight, C, x, 1.0);
  const TensorOptions opt{t, x.device()};
  const Tensor gx = grad_x.defined() ? grad_x : empty(x.sizes(), opt);
  const Tensor gw = grad_w.defined() ? grad_w : empty({C}, opt);
  const Tensor gb = grad_b.defined() ? grad_b : empty({C}, opt);
  DL_CUDNN_CHECK(cudnnBatchNormalizationBackward(h, CUDNN_BATCHNORM_SPATIAL, kScalars.one(t), kScalars.zero(t),
                                                 kScalars.one(t), kScalars.zero(t), d.x.d, x.raw_data(), d.x.d,
                                                 grad_out.raw_data(), d.x.d, gx.raw_data(), d.bn, w.raw_data(),
                                                 gw.raw_data(), gb.raw_data(), *eps, mean.raw_data(),
                                                 invstd.raw_data()));
  return true;
}

#endif  // DL_WITH_CUDNN

}  // namespace dl::cuda::host
