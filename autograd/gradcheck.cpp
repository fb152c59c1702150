#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace dl {

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opt) {
  GradcheckResult res;
  std::vector<Tensor> xs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    if (!in.is_cpu()) fail("gradcheck: input {} is on {}; gradcheck runs on the CPU", i, in.device().str());
    if (in.requires_grad() && in.dtype() != DType::Float64)
      fail("gradcheck: input {} is {}; gradients are checked in float64", i, dtype_name(in.dtype()));
    Tensor c = ops::clone(in);
    if (in.requires_grad()) c.requires_grad_(true);
    xs.push_back(c);
  }

  Generator gen(opt.seed);
  auto forward = [&]() {
    manual_seed(opt.seed);
    return fn(xs);
  };
  Tensor out = forward();
  if (!out.defined()) fail("gradcheck: the function returned an undefined tensor");
  Tensor r = randn(out.sizes(), {out.dtype()}, &gen);
  auto objective = [&]() {
    NoGradGuard ng;
    Tensor o = forward();
    return ops::reduce(ops::ReduceOp::Sum, ops::binary(ops::BinaryOp::Mul, ops::to_dtype(o, DType::Float64), r), {}, false)
        .item<double>();
  };

  // analytic
  Tensor loss = (out.to(DType::Float64) * r).sum();
  if (!loss.requires_grad()) fail("gradcheck: the output does not depend on any input that requires grad");
  loss.backward();

  res.ok = true;
  for (size_t i = 0; i < xs.size(); ++i) {
    Tensor& x = xs[i];
    if (!x.requires_grad()) continue;
    Tensor ga = x.grad();
    std::vector<double> analytic = ga.defined() ? ga.to_vector<double>() : std::vector<double>(x.numel(), 0.0);
    double* p = x.data_ptr<double>();
    int64_t n = x.numel();
    std::vector<int64_t> idx(n);
    for (int64_t j = 0; j < n; ++j) idx[j] = j;
    if (n > opt.max_elements) {  // seeded partial Fisher-Yates
      for (int64_t j = 0; j < opt.max_elements; ++j) std::swap(idx[j], idx[j + gen.below(n - j)]);
      idx.resize(opt.max_elements);
    }
    double f0 = objective();
    for (int64_t j : idx) {
      double orig = p[j];
      p[j] = orig + opt.eps;
      double fp = objective();
      p[j] = orig - opt.eps;
      double fm = objective();
      p[j] = orig;
      double numeric = (fp - fm) / (2 * opt.eps);
      if (opt.skip_kinks) {
        double right = (fp - f0) / opt.eps, left = (f0 - fm) / opt.eps;
        if (std::abs(right - left) > 1e-3 * std::max({1.0, std::abs(right), std::abs(left)})) {
          res.skipped++;
          continue;
        }
      }
      double a = analytic[j];
      double err = std::abs(a - numeric) / std::max({std::abs(a), std::abs(numeric), 1.0});
      if (std::isnan(a) || std::isnan(numeric)) err = std::numeric_limits<double>::infinity();
      res.checked++;
      if (err > res.worst_error || (res.checked == 1 && err >= res.worst_error)) {
        res.worst_error = err;
        res.message = fmt::format("input {} (shape {}), element {}: analytic {:.10g}, numeric {:.10g}, error {:.3g}", i,
                                  shape_str(x.sizes()), j, a, numeric, err);
      }
    }
  }
  int64_t total = res.checked + res.skipped;
  if (res.worst_error > opt.tol) {
    res.ok = false;
    res.message = "gradient mismatch: worst " + res.message + fmt::format(" (tolerance {:g})", opt.tol);
  } else if (total > 0 && static_cast<double>(res.skipped) > opt.max_skipped_fraction * static_cast<double>(total)) {
    res.ok = false;
    res.message = fmt::format("{} of {} points sat on kinks and were skipped; choose inputs away from kinks",
                              res.skipped, total);
  } else if (res.checked == 0) {
    res.ok = false;
    res.message = "no element was checked";
  } else {
    res.message = fmt::format("ok: {} elements checked, {} skipped at kinks; worst {}", res.checked, res.skipped,
                              res.message);
  }
  return res;
}

}  // namespace dl
