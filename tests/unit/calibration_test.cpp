// Calibration statistics (experiments/lib/calibration.h) against hand-computed values: ECE over
// equal-width bins, NLL, and a temperature whose optimum is known in closed form.
#include <cmath>

#include "data_test_util.h"
#include "experiments/lib/calibration.h"
#include "test_util.h"

using namespace dl::exp;

TEST_CASE("calibration: ECE and NLL of a small example computed by hand") {
  // confidences .9 (right), .75 (wrong), .65 (right), .55 (right); no confidence on a bin edge
  std::vector<double> p{0.9, 0.1, 0.25, 0.75, 0.35, 0.65, 0.55, 0.45};
  std::vector<int64_t> y{0, 0, 1, 0};
  CalibrationStats s = calibration_from_probs(p, y, 2, 5);
  // bins of 0.2: (0.8,1]: 1 image, acc 1, conf .9; (0.6,0.8]: 2 images, acc .5, conf .7; (0.4,0.6]: 1, acc 1, conf .55
  CHECK(s.ece == doctest::Approx((0.1 + 2 * 0.2 + 0.45) / 4).epsilon(1e-12));
  CHECK(s.accuracy == 0.75);
  CHECK(s.nll == doctest::Approx(-(std::log(0.9) + std::log(0.25) + std::log(0.65) + std::log(0.55)) / 4).epsilon(1e-12));
  CHECK(s.mean_confidence == doctest::Approx((0.9 + 0.75 + 0.65 + 0.55) / 4));
  REQUIRE(s.bins.size() == 5);
  CHECK(s.bins[4].count == 1);
  CHECK(s.bins[3].count == 2);
  CHECK(s.bins[3].accuracy == 0.5);
  CHECK(s.bins[3].confidence == doctest::Approx(0.7));
  CHECK(s.bins[2].count == 1);
  CHECK(s.bins[0].count + s.bins[1].count == 0);
  CHECK(s.bins[0].low == 0.0);
  CHECK(s.bins[4].high == 1.0);
  // with 15 bins: .9 in (12/15, 13/15], .75 in (11/15, 12/15], .65 in (9/15, 10/15], .55 in (8/15, 9/15]
  CalibrationStats s15 = calibration_from_probs(p, y, 2, 15);
  CHECK(s15.ece == doctest::Approx((0.1 + 0.75 + 0.35 + 0.45) / 4).epsilon(1e-12));
}

TEST_CASE("calibration: a confidence on a bin edge goes to the bin it closes (low < confidence <= high)") {
  std::vector<double> p{0.6, 0.4, 1.0, 0.0};
  CalibrationStats s = calibration_from_probs(p, {0, 0}, 2, 5);
  // edge 3 is 3 * 0.2 = 0.6000000000000001 > 0.6: 0.6 is in (0.4, 0.6...]; 1.0 is in the last bin
  CHECK(s.bins[2].count == 1);
  CHECK(s.bins[4].count == 1);
  CHECK(s.ece == doctest::Approx((0.4 + 0.0) / 2));
  // 0.4 and 0.8 are exactly 2 * 0.2 and 4 * 0.2 in double: each closes its bin
  std::vector<double> q{0.4, 0.15, 0.15, 0.15, 0.15, 0.8, 0.05, 0.05, 0.05, 0.05};
  CalibrationStats e = calibration_from_probs(q, {0, 1}, 5, 5);
  CHECK(e.bins[1].count == 1);  // (0.2, 0.4]
  CHECK(e.bins[2].count == 0);
  CHECK(e.bins[3].count == 1);  // (0.6, 0.8]
  CHECK(e.bins[4].count == 0);
}

TEST_CASE("calibration: logits at temperature T give the softmax of logits / T") {
  std::vector<double> z{2.0, 0.0, -1.0, 1.0, 1.0, 3.0};
  auto p = softmax_rows(z, 3, 2.0);
  double s = std::exp(1.0) + 1 + std::exp(-0.5);
  CHECK(p[0] == doctest::Approx(std::exp(1.0) / s));
  CHECK(p[2] == doctest::Approx(std::exp(-0.5) / s));
  CHECK(p[3] + p[4] + p[5] == doctest::Approx(1.0));
  double nll = nll_at_temperature(z, {0, 2}, 3, 2.0);
  CHECK(nll == doctest::Approx(-(std::log(p[0]) + std::log(p[5])) / 2).epsilon(1e-12));
  CalibrationStats c = calibration_from_logits(z, {0, 2}, 3, 2.0, 15);
  CHECK(c.nll == doctest::Approx(nll).epsilon(1e-12));
  CHECK(c.accuracy == 1.0);
}

TEST_CASE("calibration: the fitted temperature is the closed-form optimum of a two-class case") {
  // every row has logits (4, 0); 3 of 4 rows are class 0. The NLL is smallest where
  // sigmoid(4 / T) = 3/4, i.e. T = 4 / ln 3 (an overconfident model: T > 1)
  std::vector<double> z;
  std::vector<int64_t> y;
  for (int i = 0; i < 400; ++i) {
    z.insert(z.end(), {4.0, 0.0});
    y.push_back(i % 4 == 3 ? 1 : 0);
  }
  TemperatureFit f = fit_temperature(z, y, 2);
  CHECK(f.temperature == doctest::Approx(4 / std::log(3.0)).epsilon(1e-6));
  CHECK_FALSE(f.at_bound);
  CHECK(f.nll < f.nll_at_1);
  CHECK(f.nll_at_1 == doctest::Approx(nll_at_temperature(z, y, 2, 1.0)));
  // after scaling the confidence equals the accuracy: ECE 0
  CHECK(calibration_from_logits(z, y, 2, f.temperature).ece == doctest::Approx(0.0).epsilon(1e-6));

  // an underconfident model: logits (0.5, 0), 9 of 10 right: T = 0.5 / ln 9 < 1
  z.clear();
  y.clear();
  for (int i = 0; i < 100; ++i) {
    z.insert(z.end(), {0.5, 0.0});
    y.push_back(i % 10 == 0 ? 1 : 0);
  }
  CHECK(fit_temperature(z, y, 2).temperature == doctest::Approx(0.5 / std::log(9.0)).epsilon(1e-6));
}

TEST_CASE("calibration: an optimum outside the bracket is reported at its bound") {
  // always right with a margin: the NLL keeps falling as T -> 0
  std::vector<double> z{3.0, 0.0, 0.0, 3.0};
  TemperatureFit f = fit_temperature(z, {0, 1}, 2, 0.05, 20.0);
  CHECK(f.at_bound);
  CHECK(f.temperature == doctest::Approx(0.05).epsilon(1e-5));
}

TEST_CASE("calibration: sizes, labels and parameters that do not fit are refused") {
  CHECK_ERROR(calibration_from_probs({0.5, 0.5, 1.0}, {0, 1}, 2), {"3 values", "2 labels"});
  CHECK_ERROR(calibration_from_probs({0.5, 0.5}, {2}, 2), {"label 2"});
  CHECK_ERROR(calibration_from_probs({}, {}, 2), {"no rows"});
  CHECK_ERROR(calibration_from_probs({0.5, 0.5}, {0}, 2, 0), {"0 bins"});
  CHECK_ERROR(nll_at_temperature({1.0, 0.0}, {0}, 2, 0.0), {"not positive"});
  CHECK_ERROR(fit_temperature({1.0, 0.0}, {0}, 2, 2.0, 1.0), {"bracket"});
}

TEST_CASE("argmax_rows: each row's first largest value, and sizes that are not rows refused") {
  CHECK(argmax_rows({0.1, 0.7, 0.2, /**/ 0.5, 0.5, 0.0, /**/ -3, -2, -1}, 3) == std::vector<int64_t>{1, 0, 2});
  CHECK(argmax_rows({}, 3).empty());
  CHECK_THROWS_WITH_AS(argmax_rows({1, 2, 3, 4}, 3), doctest::Contains("not rows of 3 classes"), dl::Error);
}
