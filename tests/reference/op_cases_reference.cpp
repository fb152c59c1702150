// float32 forward and backward of every entry of the op-case table (tests/op_cases/op_table.cpp)
// against PyTorch 1.13: tests/fixtures/make_op_cases.py runs each entry's PyTorch line on inputs
// drawn from the entry's specs and saves, under the entry's name,
//   <name>.x<i>                                 the inputs (float32 / int64)
//   <name>[.broadcast].out / .gout / .grad<i>   output, upstream gradient, input gradients
//   <name>[.broadcast].x<i>_after               inputs written in place (running statistics)
// The strided variant uses the plain fixtures: same values, another layout. One doctest case per
// entry; a failure names the entry, the variant, the tensor and its worst element.
#include "op_cases/op_driver.h"
#include "test_util.h"

using namespace dl;
using namespace dl::test::op_cases;

namespace {

Tensor fx(const std::string& key) { return dl::test::fixture("op_cases", key); }

void run(const OpCase& c) {
  INFO("op case '", c.name, "' (tests/op_cases/op_table.cpp; PyTorch line in tests/fixtures/make_op_cases.py)");
  INFO("tolerance: rtol ", c.reference.rtol, ", atol ", c.reference.atol, " (", std::string(c.reference.why), ")");
  V plain;
  for (size_t i = 0; i < c.inputs.size(); ++i) plain.push_back(fx(fmt::format("{}.x{}", c.name, i)));
  for (Variant v : variants(c)) {
    INFO("variant: ", std::string(variant_name(v)));
    const std::string key = c.name + (v == Variant::Broadcast ? ".broadcast" : "");
    const V leaves = variant_leaves(c, v, plain);
    Tensor y = c.call(variant_inputs(c, v, leaves));
    {
      INFO("output");
      CHECK_CLOSE(y, fx(key + ".out"), c.reference.rtol, c.reference.atol);
    }
    y.backward(fx(key + ".gout"));
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (leaves[i].requires_grad()) {
        INFO("gradient of input ", i);
        REQUIRE(leaves[i].grad().defined());
        CHECK_CLOSE(leaves[i].grad(), fx(fmt::format("{}.grad{}", key, i)), c.reference.rtol, c.reference.atol);
      }
      if (c.inputs[i].mutated) {
        INFO("input ", i, " after the call (written in place)");
        CHECK_CLOSE(leaves[i], fx(fmt::format("{}.x{}_after", key, i)), 1e-6, 1e-7);
      }
    }
  }
}

bool applies(const OpCase& c) { return !*c.no_reference; }

}  // namespace

OP_CASES_REGISTER(run, applies);
