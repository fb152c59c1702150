// The test main: doctest's runner, plus one rule that doctest lacks. A case that cannot run here
// (no GPU, no data set, no fixtures) calls DL_SKIP(reason); the process then exits with
// dl::test::kSkipReturnCode, which tests/CMakeLists.txt gives ctest as SKIP_RETURN_CODE, so ctest
// counts the case as skipped (and prints why) rather than as passed. A failure still wins.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "test_util.h"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  if (rc == 0 && dl::test::skipped_count() > 0) {
    std::printf("%d test case(s) skipped: reported to ctest as skipped (exit %d)\n", dl::test::skipped_count(),
                dl::test::kSkipReturnCode);
    return dl::test::kSkipReturnCode;
  }
  return rc;
}
