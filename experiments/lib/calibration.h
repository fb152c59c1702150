#pragma once
// Calibration of a classifier's probabilities: expected calibration error over equal-width
// confidence bins, negative log-likelihood, and temperature scaling (Guo et al. 2017) fitted by
// minimising the NLL of a held-out split over one scalar T. Logits and probabilities are (N, C)
// row-major vectors of doubles.
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace dl::exp {

struct ReliabilityBin {
  double low = 0, high = 0;       // the bin is (low, high]; the first also holds a confidence of exactly 0
  int64_t count = 0;
  double confidence = 0, accuracy = 0;  // means over the bin's predictions (0 when empty)
};

struct CalibrationStats {
  int64_t count = 0;
  double accuracy = 0, ece = 0, nll = 0, mean_confidence = 0;
  std::vector<ReliabilityBin> bins;
  nlohmann::json to_json() const;
};

// Confidence = the largest probability of a row, prediction = its first argmax. Bin edges are
// numpy.linspace(0, 1, bins + 1) (edge i = i * (1 / bins), the last exactly 1); a prediction goes
// to the bin with low < confidence <= high. ECE = sum over bins of count/N * |accuracy - confidence|.
// NLL = mean of -log(p[label]), with p[label] floored at 1e-300 (a recorded probability of 0).
// Throws dl::Error on sizes that disagree, no rows, labels outside [0, C) or bins < 1.
CalibrationStats calibration_from_probs(const std::vector<double>& probs, const std::vector<int64_t>& labels,
                                        int64_t classes, int64_t bins = 15);

// Each row's first argmax (the prediction of a row of probabilities or logits).
std::vector<int64_t> argmax_rows(const std::vector<double>& values, int64_t classes);

// softmax(logits / T) per row, computed stably (max subtracted).
std::vector<double> softmax_rows(const std::vector<double>& logits, int64_t classes, double temperature = 1.0);
// mean over rows of logsumexp(z / T) - z[label] / T: the NLL of the temperature-scaled softmax.
double nll_at_temperature(const std::vector<double>& logits, const std::vector<int64_t>& labels, int64_t classes,
                          double temperature);
CalibrationStats calibration_from_logits(const std::vector<double>& logits, const std::vector<int64_t>& labels,
                                         int64_t classes, double temperature = 1.0, int64_t bins = 15);

// The T minimising nll_at_temperature, found by golden-section search on log T over
// [log t_min, log t_max] until the bracket is narrower than tol (in log T). The NLL is convex in
// 1/T, hence unimodal in log T, so the search finds the minimum of the bracket (at its edge when
// the optimum lies outside).
struct TemperatureFit {
  double temperature = 1, nll = 0, nll_at_1 = 0;
  int64_t evaluations = 0;
  bool at_bound = false;  // the optimum is at an end of the bracket
};
TemperatureFit fit_temperature(const std::vector<double>& logits, const std::vector<int64_t>& labels, int64_t classes,
                               double t_min = 0.05, double t_max = 20.0, double tol = 1e-7);

}  // namespace dl::exp
