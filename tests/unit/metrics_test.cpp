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

TEST_CASE("percentile_linear interpolates as numpy's default and the bootstrap replays its resamples") {
  // h = (N - 1) q: 3 * 0.025 = 0.075 -> 1 + 0.075 * (2 - 1); 3 * 0.5 = 1.5 -> 2 - 0.5 * (3 - 2)
  CHECK(percentile_linear({4.0, 1.0, 3.0, 2.0}, 0.025) == doctest::Approx(1.075));
  CHECK(percentile_linear({4.0, 1.0, 3.0, 2.0}, 0.5) == 2.5);
  CHECK(percentile_linear({4.0, 1.0, 3.0, 2.0}, 1.0) == 4.0);
  CHECK(percentile_linear({7.0}, 0.975) == 7.0);
  auto idx = bootstrap_indices(7, 3, 42);
  REQUIRE(idx.size() == 3);
  for (const auto& r : idx) {
    REQUIRE(r.size() == 7);
    for (int64_t j : r) CHECK((j >= 0 && j < 7));
  }
  CHECK(idx == bootstrap_indices(7, 3, 42));
  CHECK(idx != bootstrap_indices(7, 3, 43));
  // the interval compare_paired reports is the percentile interval of the statistic on those resamples
  std::vector<uint8_t> a{1, 1, 0, 1, 0, 1, 1}, b{0, 1, 1, 0, 0, 1, 0};
  auto many = bootstrap_indices(7, 200, 5);
  std::vector<double> diffs;
  for (const auto& r : many) {
    int d = 0;
    for (int64_t j : r) d += a[j] - b[j];
    diffs.push_back(d / 7.0);
  }
  auto ci = percentile_interval_95(diffs);
  auto pc = compare_paired(a, b, 200, 5);
  CHECK(pc.ci_low == ci.low);
  CHECK(pc.ci_high == ci.high);
}

TEST_CASE("McNemar: equal discordant counts give chi2 0 and p 1 on both branches") {
  auto run = [](int a_only, int b_only) {
    std::vector<uint8_t> a(200, 1), b(200, 1);
    for (int i = 0; i < a_only; ++i) b[i] = 0;
    for (int i = 0; i < b_only; ++i) a[100 + i] = 0;
    return compare_paired(a, b, 0, 1);
  };
  auto small = run(6, 6), large = run(40, 40), off_by_one = run(41, 40);
  CHECK(small.mcnemar_p == 1.0);
  CHECK(large.mcnemar_chi2 == 0.0);  // max(0, |b - c| - 1)^2: the correction never overshoots past 0
  CHECK(large.mcnemar_p == 1.0);
  CHECK(off_by_one.mcnemar_chi2 == 0.0);
  // exact: 24 discordant pairs, 20 vs 4 -> 2 * sum_{i<=4} C(24, i) / 2^24 = 2 * 12951 / 16777216
  CHECK(run(20, 4).mcnemar_p == 2.0 * 12951.0 / 16777216.0);
}
