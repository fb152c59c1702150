#include "nn/optim/adam.h"

#include <cmath>

#include "tensor/cpu/loops.h"

namespace dl::optim {

namespace {
template <typename Options>
ParamGroup adam_defaults(const Options& o) {
  ParamGroup g;
  g.lr = o.lr;
  g.betas = o.betas;
  g.eps = o.eps;
  g.weight_decay = o.weight_decay;
  g.amsgrad = o.amsgrad;
  return g;
}

AdamWOptions as_adamw_options(const AdamOptions& o) { return {o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad, o.fused}; }

std::vector<ParamGroupSpec> one_group(std::vector<Tensor> params) {
  std::vector<ParamGroupSpec> groups;
  groups.push_back({std::move(params), {}});
  return groups;
}

// Scalars of one step, computed in double as PyTorch does in Python.
struct AdamStep {
  double lr, weight_decay, beta1, beta2, eps;
  double step_size;              // lr / bc1
  double bias_correction2_sqrt;  // sqrt(bc2)
  bool decoupled, amsgrad;
};

// The fused CPU update: PyTorch's operation order, each scalar rounded to T as ATen does.
template <typename T>
struct AdamScalars {
  T wd, decay, b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step;
  bool coupled_wd, amsgrad, decoupled;
};

template <typename T>
inline void adam_element(T* pp, T g, T* mp, T* vp, T* xp, const AdamScalars<T>& c) {
  if (c.decoupled) *pp = *pp * c.decay;
  if (c.coupled_wd) g = g + c.wd * *pp;
  *mp = *mp * c.b1 + c.omb1 * g;
  *vp = *vp * c.b2 + c.omb2 * g * g;
  T second = *vp;
  if (c.amsgrad) {
    *xp = std::max(*xp, *vp);
    second = *xp;
  }
  T denom = std::sqrt(second) / c.bc2_sqrt + c.eps;
  *pp = *pp + c.neg_step * *mp / denom;
}

// Every operand dense (the usual case): the same arithmetic as one vectorised loop, at memory speed. The weight
// decay's form (none, coupled, decoupled) is a template argument rather than a select in the loop: GCC left the
// AVX2 clone with those selects scalar ("control flow in loop"; 3.1 ms of the scratch CNN's ~72 ms step, now 0.7; a sqrt
// and two divisions a value); AMSGrad, which writes one more array, is a loop of its own: a conditional store
// would keep the loop scalar.
enum class AdamDecay { none, coupled, decoupled };

template <typename T, AdamDecay D, bool AMSGrad>
inline void adam_dense_element(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
                               T* __restrict x, int64_t i, const AdamScalars<T>& c) {
  T pi = p[i], gi = g[i];
  if constexpr (D == AdamDecay::decoupled) pi = pi * c.decay;
  if constexpr (D == AdamDecay::coupled) gi = gi + c.wd * pi;
  const T mi = m[i] * c.b1 + c.omb1 * gi;
  const T vi = v[i] * c.b2 + c.omb2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  T second = vi;
  if constexpr (AMSGrad) {
    second = std::max(x[i], vi);
    x[i] = second;
  }
  const T denom = std::sqrt(second) / c.bc2_sqrt + c.eps;
  p[i] = pi + c.neg_step * mi / denom;
}

template <typename T, AdamDecay D>
DL_VECTOR_CLONES DL_NO_FP_CONTRACT void adam_dense_loop(T* __restrict p, const T* __restrict g, T* __restrict m,
                                                        T* __restrict v, T* __restrict x, int64_t n,
                                                        AdamScalars<T> c) {
  if (c.amsgrad) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) adam_dense_element<T, D, true>(p, g, m, v, x, i, c);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) adam_dense_element<T, D, false>(p, g, m, v, x, i, c);
  }
}

template <typename T>
void adam_dense(T* p, const T* g, T* m, T* v, T* x, int64_t n, const AdamScalars<T>& c) {
  if (c.decoupled)
    adam_dense_loop<T, AdamDecay::decoupled>(p, g, m, v, x, n, c);
  else if (c.coupled_wd)
    adam_dense_loop<T, AdamDecay::coupled>(p, g, m, v, x, n, c);
  else
    adam_dense_loop<T, AdamDecay::none>(p, g, m, v, x, n, c);
}

template <typename T>
void adam_update(const Tensor& p, const Tensor& grad, const Tensor& m, const Tensor& v, const Tensor& vmax,
                 const AdamStep& s) {
  const AdamScalars<T> c{static_cast<T>(s.weight_decay), static_cast<T>(1.0 - s.lr * s.weight_decay),
                         static_cast<T>(s.beta1), static_cast<T>(1.0 - s.beta1), static_cast<T>(s.beta2),
                         static_cast<T>(1.0 - s.beta2), static_cast<T>(s.bias_correction2_sqrt),
                         static_cast<T>(s.eps), static_cast<T>(-s.step_size),
                         !s.decoupled && s.weight_decay != 0, s.amsgrad, s.decoupled};
  const Tensor& vm = c.amsgrad ? vmax : v;  // an operand for every slot; unused when !amsgrad
  constexpr int64_t S = sizeof(T);
  cpu::for_each_run<5>({&p, &grad, &m, &v, &vm}, [&](std::array<char*, 5> ptr, std::array<int64_t, 5> st, int64_t n) {
    if (st[0] == S && st[1] == S && st[2] == S && st[3] == S && st[4] == S && (!c.amsgrad || ptr[4] != ptr[3]))
      return adam_dense(reinterpret_cast<T*>(ptr[0]), reinterpret_cast<const T*>(ptr[1]), reinterpret_cast<T*>(ptr[2]),
                        reinterpret_cast<T*>(ptr[3]), reinterpret_cast<T*>(ptr[4]), n, c);
    for (int64_t i = 0; i < n; ++i)
      adam_element(reinterpret_cast<T*>(ptr[0] + i * st[0]), *reinterpret_cast<const T*>(ptr[1] + i * st[1]),
                   reinterpret_cast<T*>(ptr[2] + i * st[2]), reinterpret_cast<T*>(ptr[3] + i * st[3]),
                   reinterpret_cast<T*>(ptr[4] + i * st[4]), c);
  });
}

// The same update as tensor ops (any device; CUDA parameters take this path), in the fused loop's
// order, so both round alike; PyTorch's _single_tensor_adam spells it the same way. The state
// (m, v, vmax) is updated in place. Runs under the step's NoGradGuard: no graph is recorded.
// p, m, v, vmax: handles (by value) on the live tensors' memory.
void adam_update_ops(Tensor p, const Tensor& grad, Tensor m, Tensor v, Tensor vmax, const AdamStep& s) {
  if (s.decoupled) p.mul_(1 - s.lr * s.weight_decay);
  Tensor g = !s.decoupled && s.weight_decay != 0 ? grad + s.weight_decay * p : grad;
  m.mul_(s.beta1).add_(g, 1 - s.beta1);
  v.mul_(s.beta2).add_((1 - s.beta2) * g * g);
  Tensor second = s.amsgrad ? vmax.maximum_(v) : v;
  Tensor denom = (second.sqrt() / s.bias_correction2_sqrt).add_(s.eps);
  p.add_(-s.step_size * m / denom);
}
}  // namespace

Adam::Adam(std::vector<Tensor> params, const AdamOptions& o) : Adam(one_group(std::move(params)), as_adamw_options(o), false) {}

Adam::Adam(std::vector<ParamGroupSpec> groups, const AdamOptions& o) : Adam(std::move(groups), as_adamw_options(o), false) {}

Adam::Adam(std::vector<ParamGroupSpec> groups, const AdamWOptions& o, bool decoupled)
    : Optimizer(adam_defaults(o), o.fused), decoupled_(decoupled) {
  init_groups(std::move(groups));
}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& o) : Adam(one_group(std::move(params)), o, true) {}

AdamW::AdamW(std::vector<ParamGroupSpec> groups, const AdamWOptions& o) : Adam(std::move(groups), o, true) {}

void Adam::validate(const ParamGroup& g) const {
  if (!(g.lr >= 0) || !std::isfinite(g.lr)) fail("{}: invalid learning rate {} (expected a finite lr >= 0)", name(), g.lr);
  if (!(g.eps >= 0) || !std::isfinite(g.eps)) fail("{}: invalid epsilon value {} (expected >= 0)", name(), g.eps);
  for (int i = 0; i < 2; ++i)
    if (!(g.betas[i] >= 0 && g.betas[i] < 1))
      fail("{}: invalid beta parameter at index {}: {} (expected 0 <= beta < 1)", name(), i, g.betas[i]);
  if (!(g.weight_decay >= 0) || !std::isfinite(g.weight_decay))
    fail("{}: invalid weight_decay value {} (expected >= 0)", name(), g.weight_decay);
}

void Adam::step_group(ParamGroup& g) {
  for (auto& p : g.params) {
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    ParamState& st = mutable_state(p);
    if (!st.count("exp_avg")) {
      st["step"] = scalar_tensor(0.0, DType::Float64);
      st["exp_avg"] = zeros(p.sizes(), {p.dtype(), p.device()});
      st["exp_avg_sq"] = zeros(p.sizes(), {p.dtype(), p.device()});
      if (g.amsgrad) st["max_exp_avg_sq"] = zeros(p.sizes(), {p.dtype(), p.device()});
    }
    if (g.amsgrad && !st.count("max_exp_avg_sq")) st["max_exp_avg_sq"] = zeros(p.sizes(), {p.dtype(), p.device()});
    double t = increment_step(st);
    AdamStep s;
    s.lr = g.lr;
    s.weight_decay = g.weight_decay;
    s.beta1 = g.betas[0];
    s.beta2 = g.betas[1];
    s.eps = g.eps;
    s.step_size = g.lr / (1.0 - std::pow(g.betas[0], t));
    s.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(g.betas[1], t));
    s.decoupled = decoupled_;
    s.amsgrad = g.amsgrad;
    const Tensor& m = st["exp_avg"];
    const Tensor& v = st["exp_avg_sq"];
    Tensor vmax = g.amsgrad ? st["max_exp_avg_sq"] : Tensor();
    if (fused_ && p.is_cpu())
      DL_DISPATCH_FLOATING(p.dtype(), "Adam.step", [&] { adam_update<scalar_t>(p, grad, m, v, vmax, s); });
    else
      adam_update_ops(p, grad, m, v, vmax, s);
  }
}

nlohmann::json Adam::group_to_json(const ParamGroup& g) const {
  return {{"lr", g.lr}, {"betas", {g.betas[0], g.betas[1]}}, {"eps", g.eps}, {"weight_decay", g.weight_decay},
          {"amsgrad", g.amsgrad}};
}

void Adam::group_from_json(const nlohmann::json& j, ParamGroup& g) const {
  g.lr = json_number(j, "lr", name());
  if (!j.contains("betas") || !j["betas"].is_array() || j["betas"].size() != 2 || !j["betas"][0].is_number() ||
      !j["betas"][1].is_number())
    fail("{}.load_state_dict: param group lacks \"betas\": [beta1, beta2]", name());
  g.betas = {j["betas"][0].get<double>(), j["betas"][1].get<double>()};
  g.eps = json_number(j, "eps", name());
  g.weight_decay = json_number(j, "weight_decay", name());
  g.amsgrad = json_bool(j, "amsgrad", name());
}

}  // namespace dl::optim
