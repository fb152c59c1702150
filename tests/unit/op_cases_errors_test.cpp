// The bad-argument checks of the op-case table (tests/op_cases/op_table.cpp): each error case of an
// entry must throw a dl::Error whose message contains every expected substring. One doctest case
// per entry that has error cases, named after it.
#include "op_cases/op_driver.h"
#include "test_util.h"

using namespace dl;
using namespace dl::test::op_cases;

namespace {

void run(const OpCase& c) {
  for (const ErrorCase& e : c.errors) {
    INFO("op case '", c.name, "', bad argument: ", std::string(e.what));
    try {
      e.call();
      FAIL_CHECK("no error thrown");
    } catch (const dl::Error& err) {
      const std::string msg = err.what();
      std::string missing;
      for (const auto& part : e.message)
        if (msg.find(part) == std::string::npos) missing += "\n  expected to contain: " + part;
      INFO("message: ", msg, missing);
      const bool op_error_message_ok = missing.empty();  // one assertion per error case (count_checks.sh)
      CHECK(op_error_message_ok);
    }
  }
}

bool applies(const OpCase& c) { return !c.errors.empty(); }

}  // namespace

OP_CASES_REGISTER(run, applies);
