// Metrics and the paired statistics behind the study's conclusions, against hand-computed values.
#include "experiments/lib/metrics.h"
#include "test_util.h"

using namespace dl::exp;

TEST_CASE("metrics: accuracy, per-class, macro and weighted averages, confusion") {
  // labels 0 0 0 1 1 2 ; preds 0 1 0 1 1 0
  auto m = compute_metrics({0, 0, 0, 1, 1, 2}, {0, 1, 0, 1, 1, 0}, 3);
  CHECK(m.accuracy == doctest::Approx(4.0 / 6));
  CHECK(m.confusion[0][1] == 1);
  CHECK(m.confusion[2][0] == 1);
  CHECK(m.per_class[0].precision == doctest::Approx(2.0 / 3));
  CHECK(m.per_class[0].recall == doctest::Approx(2.0 / 3));
  CHECK(m.per_class[1].precision == doctest::Approx(2.0 / 3));
  CHECK(m.per_class[1].recall == doctest::Approx(1.0));
  CHECK(m.per_class[2].precision == 0.0);  // never predicted: zero_division = 0
  CHECK(m.per_class[2].f1 == 0.0);
  CHECK(m.macro.f1 == doctest::Approx((2.0 / 3 + 0.8 + 0) / 3));
  CHECK(m.weighted.recall == doctest::Approx(m.accuracy));
  auto again = metrics_from_confusion(m.confusion);
  CHECK(again.macro.f1 == doctest::Approx(m.macro.f1));
  CHECK_THROWS_AS(compute_metrics({0, 3}, {0, 0}, 3), dl::Error);
  CHECK_THROWS_AS(compute_metrics({0}, {0, 0}, 3), dl::Error);
}

TEST_CASE("paired comparison: McNemar and bootstrap interval") {
  std::vector<uint8_t> a(1000, 1), b(1000, 1);
  for (int i = 0; i < 60; ++i) b[i] = 0;      // a right, b wrong: 60
  for (int i = 60; i < 80; ++i) a[i] = 0;     // b right, a wrong: 20
  auto r = compare_paired(a, b, 500, 1);
  CHECK(r.a_only == 60);
  CHECK(r.b_only == 20);
  CHECK(r.diff == doctest::Approx(0.04));
  CHECK(r.mcnemar_chi2 == doctest::Approx((40.0 - 1) * (40.0 - 1) / 80.0));
  CHECK(r.mcnemar_p < 0.001);
  CHECK(r.ci_low > 0.0);
  CHECK(r.ci_high < 0.08);
  CHECK(r.ci_low < r.diff);
  // identical models: no difference, p = 1
  auto same = compare_paired(a, a, 100, 1);
  CHECK(same.diff == 0.0);
  CHECK(same.mcnemar_p == doctest::Approx(1.0));
  // small discordant counts use the exact binomial test: 5 vs 0 -> p = 2 * 0.5^5
  std::vector<uint8_t> c(10, 1), d(10, 1);
  for (int i = 0; i < 5; ++i) d[i] = 0;
  CHECK(compare_paired(c, d, 10, 1).mcnemar_p == doctest::Approx(0.0625));
  CHECK_THROWS_AS(compare_paired(c, std::vector<uint8_t>(9, 1)), dl::Error);
}

TEST_CASE("most confused pairs are ordered by count") {
  std::vector<std::vector<int64_t>> conf{{5, 3, 0}, {1, 7, 9}, {0, 2, 4}};
  auto p = most_confused(conf, 2);
  REQUIRE(p.size() == 2);
  CHECK(p[0].true_class == 1);
  CHECK(p[0].predicted_class == 2);
  CHECK(p[1].count == 3);
}
