#pragma once
// One op case: what the table in op_table.cpp holds, and what the four drivers share.
//
// An entry names an op call and its inputs once; every check kind is derived from it:
//   gradcheck  tests/gradcheck/op_cases_gradcheck.cpp  float64 finite differences (CPU)
//   reference  tests/reference/op_cases_reference.cpp  float32 forward + backward vs PyTorch
//              (fixtures by tests/fixtures/make_op_cases.py, which reads the table's JSON dump)
//   cuda       tests/cuda/op_cases_cuda_test.cpp       the same call on the GPU vs the CPU, float32
//              and float64, forward and backward, both GPU backends; and a float64 gradcheck on the GPU
//   errors     tests/unit/op_cases_errors_test.cpp     bad arguments give a dl::Error saying so
// Each driver registers one doctest case per entry, named after it (ctest: <label>/<file>/<name>).
//
// Variants. Besides the inputs as specified ("plain"), the drivers run each entry on
//   "strided":   every floating input that is not written in place, with the same values but a
//                non-contiguous layout (last two dims transposed in memory; 1-D: every second
//                element of a wider buffer);
//   "broadcast": input 0 narrowed to its first row along dim 0 and expanded back (stride 0), so
//                the op reads a broadcast view and the gradient sums over the copies.
// An entry opts out of a variant or a check kind only by saying why (the no_* strings).
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "tensor/tensor.h"

namespace dl::test::op_cases {

using V = std::vector<Tensor>;
using Call = std::function<Tensor(const V&)>;

// One input. Floating inputs take the check's dtype (float64 for gradcheck, float32 against
// PyTorch, both on the GPU); Int64 inputs (indices, targets) hold integers in [lo, hi).
struct In {
  Shape shape;
  double lo = -1.0, hi = 1.0;
  DType dtype = DType::Float64;  // Float64 = "floating"; or Int64
  bool grad = true;              // a leaf that requires grad
  bool mutated = false;          // written in place by the op (running statistics): compared after the call
};
// Shorthands for the table.
inline In in(Shape s, double lo = -1.0, double hi = 1.0) { return {std::move(s), lo, hi}; }
inline In positive(Shape s) { return {std::move(s), 0.5, 2.0}; }                          // away from 0 (log, sqrt, 1/x)
inline In index(Shape s, int64_t hi) { return {std::move(s), 0.0, double(hi), DType::Int64, false}; }  // [0, hi)
inline In constant(Shape s, double lo, double hi) { return {std::move(s), lo, hi, DType::Float64, false}; }
inline In running(Shape s, double lo, double hi) { return {std::move(s), lo, hi, DType::Float64, false, true}; }

// |actual - expected| <= atol + rtol * |expected|, and why these numbers.
struct Tol {
  double rtol = 1e-5, atol = 1e-6;
  const char* why = "float32 elementwise: a few ulp of rounding";
};

// A bad call and the substrings its dl::Error message must contain.
struct ErrorCase {
  const char* what;
  std::function<void()> call;
  std::vector<std::string> message;
};

struct OpCase {
  std::string name;  // also the key of the PyTorch line in tests/fixtures/make_op_cases.py
  Call call;         // the op through the public API, on the inputs in order
  std::vector<In> inputs;
  Tol reference{};                         // float32 vs PyTorch
  Tol cuda{};                              // float32 GPU vs CPU (float64: kCuda64 below)
  GradcheckOptions gradcheck{};            // float64; change tol only with gradcheck_why
  const char* gradcheck_why = "";
  // Opt-outs: empty = the check or variant runs; otherwise the reason it does not.
  const char* no_reference = "";
  const char* no_cuda = "";
  const char* no_strided = "";
  const char* no_broadcast = "";
  std::vector<ErrorCase> errors{};
};

// float64 GPU vs CPU: both sum in float64; only the order of the sums differs.
inline constexpr Tol kCuda64{1e-10, 1e-12, "float64: summation order only"};

// The table (op_table.cpp), built once; names are unique (checked).
const std::vector<OpCase>& all();
const OpCase& find(const std::string& name);

enum class Variant { Plain, Strided, Broadcast };
const char* variant_name(Variant v);
// The variants that apply to an entry (Plain always first).
std::vector<Variant> variants(const OpCase& c);

// The plain inputs of an entry: seeded by its name, floating ones in `dtype`, leaves that require
// grad where the spec says so.
V make_inputs(const OpCase& c, DType dtype);
// Requires grad on the floating inputs whose spec says so (inputs loaded from fixtures).
void set_requires_grad(const OpCase& c, V& inputs);
// The leaves of a variant, made from the plain inputs (fresh copies, requiring grad as specified).
V variant_leaves(const OpCase& c, Variant v, const V& plain);
// What the op sees: the leaves laid out as the variant says (differentiable views and copies).
V variant_inputs(const OpCase& c, Variant v, const V& leaves);

// The table as JSON for tests/fixtures/make_op_cases.py (dump_op_cases prints it).
std::string to_json();

}  // namespace dl::test::op_cases
