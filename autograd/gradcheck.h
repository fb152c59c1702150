#pragma once
// Finite-difference gradient checking in float64 (CPU).
//
// The function's output is projected onto a fixed random tensor r, L = sum(f(x) * r), so one
// backward gives the analytic gradient of L for every input element; the numeric gradient is the
// central difference (L(x + eps) - L(x - eps)) / 2 eps. The error of an element is
// |analytic - numeric| / max(|analytic|, |numeric|, 1), so atol acts on small gradients and rtol
// on large ones. Points within eps of a kink (ReLU at 0, max-pool ties) are detected from the
// one-sided differences and skipped. The default generator is re-seeded before every forward,
// so random ops (dropout) draw the same mask each time.
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl {

struct GradcheckOptions {
  double eps = 1e-6;
  double tol = 1e-6;                  // on the error defined above
  int64_t max_elements = 200;         // per input; a seeded random subset beyond this
  uint64_t seed = 1234;               // for the projection, the subset and forward re-seeding
  bool skip_kinks = true;
  double max_skipped_fraction = 0.5;  // more skipped points than this fails the check
};

struct GradcheckResult {
  bool ok = false;
  std::string message;  // the worst element: input, index, analytic, numeric, error
  double worst_error = 0;
  int64_t checked = 0, skipped = 0;
  explicit operator bool() const { return ok; }
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks the gradient of fn with respect to every input that requires grad. Inputs must be
// float64 CPU tensors; they are copied, so the caller's tensors are untouched.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opt = {});

}  // namespace dl
