// Prints the op-case table (op_table.cpp) as JSON: the case list tests/fixtures/make_op_cases.py
// reads to write the PyTorch fixtures (tests/fixtures/run_all.sh runs this first).
#include <cstdio>
#include <exception>

#include "op_case.h"

int main() {
  try {
    std::fputs(dl::test::op_cases::to_json().c_str(), stdout);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dump_op_cases: %s\n", e.what());
    return 1;
  }
}
