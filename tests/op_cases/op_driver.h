#pragma once
// Registers one doctest case per op-case table entry (op_table.cpp), named after the entry, in a
// driver's test program: OP_CASES_REGISTER(run, applies) at namespace scope, where
// run(const OpCase&) does the check and applies(const OpCase&) says which entries get a case.
// Header-only because it needs doctest's runner, which dump_op_cases does not link.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <array>
#include <stdexcept>
#include <utility>

#include "op_case.h"

namespace dl::test::op_cases {

using Runner = void (*)(const OpCase&);

namespace detail {
// doctest registers plain functions; run_entry<I> is the one for entry I, calling the program's runner.
inline Runner g_runner = nullptr;
inline constexpr size_t kMaxCases = 512;  // raise when the table outgrows it (registration says so)
template <size_t I>
void run_entry() {
  g_runner(all()[I]);
}
template <size_t... I>
constexpr std::array<void (*)(), sizeof...(I)> entry_functions(std::index_sequence<I...>) {
  return {&run_entry<I>...};
}
}  // namespace detail

inline int register_cases(Runner run, bool (*applies)(const OpCase&), const char* file) {
  if (detail::g_runner) throw std::logic_error("op_cases::register_cases: one driver per test program");
  detail::g_runner = run;
  static constexpr auto fns = detail::entry_functions(std::make_index_sequence<detail::kMaxCases>{});
  const auto& cases = all();
  if (cases.size() > detail::kMaxCases)
    throw std::logic_error(fmt::format("op_cases: {} table entries but kMaxCases is {}; raise it in op_driver.h",
                                       cases.size(), detail::kMaxCases));
  int n = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (!applies(cases[i])) continue;
    // the line is the entry's position, so doctest lists the cases in table order
    doctest::detail::regTest(doctest::detail::TestCase(fns[i], file, static_cast<unsigned>(i + 1),
                                                       doctest_detail_test_suite_ns::getCurrentTestSuite()) *
                             cases[i].name.c_str());
    ++n;
  }
  return n;
}

}  // namespace dl::test::op_cases

#define DL_OP_CASES_CAT2(a, b) a##b
#define DL_OP_CASES_CAT(a, b) DL_OP_CASES_CAT2(a, b)
#define OP_CASES_REGISTER(run, applies)                               \
  static const int DL_OP_CASES_CAT(dl_op_cases_registered_, __LINE__) = \
      ::dl::test::op_cases::register_cases((run), (applies), __FILE__)
