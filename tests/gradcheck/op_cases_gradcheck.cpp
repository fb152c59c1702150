// float64 finite-difference gradient checks of every entry of the op-case table
// (tests/op_cases/op_table.cpp), on each variant (plain, strided, broadcast). One doctest case per
// entry, named after it; a failure names the entry, the variant and the worst element.
#include "op_cases/op_driver.h"
#include "test_util.h"

using namespace dl;
using namespace dl::test::op_cases;

namespace {

void run(const OpCase& c) {
  INFO("op case '", c.name, "' (tests/op_cases/op_table.cpp)");
  INFO("gradcheck options: ", std::string(*c.gradcheck_why ? c.gradcheck_why : "the defaults"));
  const V plain = make_inputs(c, DType::Float64);
  for (Variant v : variants(c)) {
    INFO("variant: ", std::string(variant_name(v)));
    const V leaves = variant_leaves(c, v, plain);
    CHECK_GRADCHECK([&c, v](const V& x) { return c.call(variant_inputs(c, v, x)); }, leaves, c.gradcheck);
  }
}

bool applies(const OpCase&) { return true; }

}  // namespace

OP_CASES_REGISTER(run, applies);
