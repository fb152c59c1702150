#include "nn/optim/sgd.h"

#include "tensor/cpu/loops.h"

namespace dl::optim {

namespace {
ParamGroup sgd_defaults(const SGDOptions& o) {
  ParamGroup g;
  g.lr = o.lr;
  g.momentum = o.momentum;
  g.dampening = o.dampening;
  g.weight_decay = o.weight_decay;
  g.nesterov = o.nesterov;
  return g;
}

// The fused CPU update; the operation order (and rounding of each scalar to scalar_t) is
// PyTorch's, so float32 runs agree with torch to rounding.
template <typename T>
struct SgdScalars {
  T wd, mom, keep, neg_lr;
  bool use_wd, use_mom, nesterov, first;
};

template <typename T>
inline void sgd_element(T* pp, const T* gp, T* bp, const SgdScalars<T>& c) {
  T d = *gp;
  if (c.use_wd) d = d + c.wd * *pp;
  if (c.use_mom) {
    *bp = c.first ? d : *bp * c.mom + c.keep * d;
    d = c.nesterov ? d + c.mom * *bp : *bp;
  }
  *pp = *pp + c.neg_lr * d;
}

// Parameter, gradient and momentum dense (the usual case): the same arithmetic as one vectorised loop, so the
// step runs at memory speed rather than one strided element at a time. The options are template arguments, not
// selects in the loop: GCC left the AVX2 clone with those selects scalar ("control flow in loop").
template <typename T, bool Wd, bool Mom, bool Nesterov, bool First>
DL_VECTOR_CLONES DL_NO_FP_CONTRACT void sgd_loop(T* __restrict p, const T* __restrict g, T* __restrict b, int64_t n,
                                                 SgdScalars<T> c) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T d = g[i];
    if constexpr (Wd) d = d + c.wd * p[i];
    if constexpr (Mom) {
      T nb;
      if constexpr (First)
        nb = d;
      else
        nb = b[i] * c.mom + c.keep * d;
      b[i] = nb;
      if constexpr (Nesterov)
        d = d + c.mom * nb;
      else
        d = nb;
    }
    p[i] = p[i] + c.neg_lr * d;
  }
}

template <typename T, bool Wd>
void sgd_dense_wd(T* p, const T* g, T* b, int64_t n, const SgdScalars<T>& c) {
  if (!c.use_mom) return sgd_loop<T, Wd, false, false, false>(p, g, b, n, c);
  if (c.nesterov)
    return c.first ? sgd_loop<T, Wd, true, true, true>(p, g, b, n, c) : sgd_loop<T, Wd, true, true, false>(p, g, b, n, c);
  return c.first ? sgd_loop<T, Wd, true, false, true>(p, g, b, n, c) : sgd_loop<T, Wd, true, false, false>(p, g, b, n, c);
}

template <typename T>
void sgd_dense(T* p, const T* g, T* b, int64_t n, const SgdScalars<T>& c) {
  if (c.use_wd)
    sgd_dense_wd<T, true>(p, g, b, n, c);
  else
    sgd_dense_wd<T, false>(p, g, b, n, c);
}

template <typename T>
void sgd_update(const Tensor& p, const Tensor& grad, const Tensor& buf, bool first, const ParamGroup& g) {
  const SgdScalars<T> c{static_cast<T>(g.weight_decay), static_cast<T>(g.momentum), static_cast<T>(1.0 - g.dampening),
                        static_cast<T>(-g.lr), g.weight_decay != 0, g.momentum != 0, g.nesterov, first};
  constexpr int64_t S = sizeof(T);
  if (c.use_mom) {
    cpu::for_each_run<3>({&p, &grad, &buf}, [&](std::array<char*, 3> ptr, std::array<int64_t, 3> st, int64_t n) {
      if (st[0] == S && st[1] == S && st[2] == S)
        return sgd_dense(reinterpret_cast<T*>(ptr[0]), reinterpret_cast<const T*>(ptr[1]),
                         reinterpret_cast<T*>(ptr[2]), n, c);
      for (int64_t i = 0; i < n; ++i)
        sgd_element(reinterpret_cast<T*>(ptr[0] + i * st[0]), reinterpret_cast<const T*>(ptr[1] + i * st[1]),
                    reinterpret_cast<T*>(ptr[2] + i * st[2]), c);
    });
  } else {
    cpu::for_each_run<2>({&p, &grad}, [&](std::array<char*, 2> ptr, std::array<int64_t, 2> st, int64_t n) {
      if (st[0] == S && st[1] == S)
        return sgd_dense(reinterpret_cast<T*>(ptr[0]), reinterpret_cast<const T*>(ptr[1]), static_cast<T*>(nullptr),
                         n, c);
      for (int64_t i = 0; i < n; ++i)
        sgd_element(reinterpret_cast<T*>(ptr[0] + i * st[0]), reinterpret_cast<const T*>(ptr[1] + i * st[1]),
                    static_cast<T*>(nullptr), c);
    });
  }
}
}  // namespace

SGD::SGD(std::vector<Tensor> params, const SGDOptions& o) : Optimizer(sgd_defaults(o), o.fused) {
  std::vector<ParamGroupSpec> groups;
  groups.push_back({std::move(params), {}});
  init_groups(std::move(groups));
}

SGD::SGD(std::vector<ParamGroupSpec> groups, const SGDOptions& o) : Optimizer(sgd_defaults(o), o.fused) {
  init_groups(std::move(groups));
}

void SGD::validate(const ParamGroup& g) const {
  if (std::isnan(g.lr))
    fail("SGD: invalid learning rate nan (lr is required: set SGDOptions::lr or the group's lr)");
  if (!(g.lr >= 0) || !std::isfinite(g.lr)) fail("SGD: invalid learning rate {} (expected a finite lr >= 0)", g.lr);
  if (!(g.momentum >= 0) || !std::isfinite(g.momentum)) fail("SGD: invalid momentum value {} (expected >= 0)", g.momentum);
  if (!(g.weight_decay >= 0) || !std::isfinite(g.weight_decay))
    fail("SGD: invalid weight_decay value {} (expected >= 0)", g.weight_decay);
  if (!std::isfinite(g.dampening)) fail("SGD: invalid dampening value {}", g.dampening);
  if (g.nesterov && (g.momentum <= 0 || g.dampening != 0))
    fail("SGD: Nesterov momentum requires a momentum and zero dampening (got momentum={}, dampening={})", g.momentum,
         g.dampening);
}

void SGD::step_group(ParamGroup& g) {
  for (auto& p : g.params) {
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    ParamState& st = mutable_state(p);
    Tensor unused;
    Tensor& buf = g.momentum != 0 ? st["momentum_buffer"] : unused;
    const bool first = g.momentum != 0 && !buf.defined();
    if (fused_ && p.is_cpu()) {
      if (first) buf = empty(p.sizes(), p.dtype());
      DL_DISPATCH_FLOATING(p.dtype(), "SGD.step", [&] { sgd_update<scalar_t>(p, grad, buf, first, g); });
      continue;
    }
    // The same update as tensor ops (any device; CUDA parameters take this path), in the fused
    // loop's order, so both round alike. Runs under the step's NoGradGuard: no graph is recorded.
    Tensor d = g.weight_decay != 0 ? grad + g.weight_decay * p : grad;
    if (g.momentum != 0) {
      if (first)
        buf = d.clone();
      else
        buf.mul_(g.momentum).add_(d, 1 - g.dampening);  // in place: the state stays where it lies
      d = g.nesterov ? d + g.momentum * buf : buf;
    }
    p.add_(d, -g.lr);
  }
}

nlohmann::json SGD::group_to_json(const ParamGroup& g) const {
  return {{"lr", g.lr}, {"momentum", g.momentum}, {"dampening", g.dampening}, {"weight_decay", g.weight_decay},
          {"nesterov", g.nesterov}};
}

void SGD::group_from_json(const nlohmann::json& j, ParamGroup& g) const {
  g.lr = json_number(j, "lr", name());
  g.momentum = json_number(j, "momentum", name());
  g.dampening = json_number(j, "dampening", name());
  g.weight_decay = json_number(j, "weight_decay", name());
  g.nesterov = json_bool(j, "nesterov", name());
}

}  // namespace dl::optim
