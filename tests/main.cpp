// The test main: doctest's runner, plus one rule that doctest lacks. A case that cannot run here
// (no GPU, no data set, no fixtures) calls DL_SKIP(reason); the process then exits with
// dl::test::kSkipReturnCode, which tests/CMakeLists.txt gives ctest as SKIP_RETURN_CODE, so ctest
// counts the case as skipped (and prints why) rather than as passed. A failure still wins.
// And a second: a run in which no test case ran at all (a -tc filter that matched nothing, as a
// case name with a ';' in it did, split in two by ctest's discovery) fails instead of passing.
// And a third: convolutions use their fixed rules (DL_CONV_ALGO=heuristic, unless the environment
// says otherwise), so no result depends on a timing or on a cache file left by another process;
// the search itself is tested with its own scope (tests/unit/fast_kernels_test.cpp). Programs the
// tests start inherit the setting.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include "test_util.h"

namespace {
int g_cases_started = 0;

// Counts the test cases that start (doctest has no public count of them).
struct CaseCounter : doctest::IReporter {
  explicit CaseCounter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { ++g_cases_started; }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("case_counter", 1, CaseCounter);
}  // namespace

int main(int argc, char** argv) {
  setenv("DL_CONV_ALGO", "heuristic", 0);
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  if (g_cases_started == 0) {
    std::printf("error: no test case ran (a filter that matches no case name?): counted as a failure\n");
    return 1;
  }
  if (rc == 0 && dl::test::skipped_count() > 0) {
    std::printf("%d test case(s) skipped: reported to ctest as skipped (exit %d)\n", dl::test::skipped_count(),
                dl::test::kSkipReturnCode);
    return dl::test::kSkipReturnCode;
  }
  return rc;
}
