#pragma once
// Classification metrics computed from predictions, and the statistics the comparison uses to
// say whether one model beats another on the shared test set.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dl::exp {

struct ClassMetrics {
  double precision = 0, recall = 0, f1 = 0;
  int64_t support = 0;
};

struct Metrics {
  int64_t num_classes = 0;
  int64_t count = 0;
  double accuracy = 0;
  std::vector<ClassMetrics> per_class;
  ClassMetrics macro, weighted;            // support = total
  std::vector<std::vector<int64_t>> confusion;  // [true][pred]
  nlohmann::json to_json(const std::vector<std::string>& class_names) const;
};

// labels and predictions in [0, num_classes); throws dl::Error on mismatched sizes or bad labels.
// A class never predicted has precision 0 (as scikit-learn's zero_division=0). Macro averages run over
// all num_classes classes, as scikit-learn's with labels=range(num_classes): a class absent from both
// labels and predictions counts as 0 (scikit-learn's default labels=None would leave it out).
Metrics compute_metrics(const std::vector<int64_t>& labels, const std::vector<int64_t>& predictions,
                        int64_t num_classes);

// Reads back a confusion matrix: the metrics it implies (used to cross-check run folders).
Metrics metrics_from_confusion(const std::vector<std::vector<int64_t>>& confusion);

// Paired comparison of two models on the same test images (correct[i] = prediction i is right).
struct PairedComparison {
  double diff = 0;              // accuracy(a) - accuracy(b)
  double ci_low = 0, ci_high = 0;  // 95% bootstrap percentile interval of diff (0, 0 when no resamples)
  int64_t a_only = 0, b_only = 0;  // discordant pairs: a right & b wrong, and the reverse
  // McNemar with continuity correction: max(0, |a_only - b_only| - 1)^2 / (a_only + b_only), 0 when there
  // are no discordant pairs. The clamp at 0 means a_only == b_only gives 0 (p = 1), not 1 / (a_only + b_only).
  double mcnemar_chi2 = 0;
  // Discordant pairs < 25: the exact two-sided binomial test of a_only out of a_only + b_only at 1/2
  // (scipy.stats.binomtest; 1 when there are none). Otherwise the chi-square(1) tail of mcnemar_chi2.
  double mcnemar_p = 1;
  int64_t bootstrap_samples = 0;
};
// The bootstrap resamples the images with bootstrap_indices(n, bootstrap_samples, seed) and takes the
// percentile_interval_95 of the per-resample differences.
PairedComparison compare_paired(const std::vector<uint8_t>& correct_a, const std::vector<uint8_t>& correct_b,
                                int64_t bootstrap_samples = 2000, uint64_t seed = 12345);

// Bootstrap 95% interval of the difference in macro F1 between two models on the same images: each
// resample (bootstrap_indices, as above) takes the same images for labels and both models.
struct F1Difference {
  double diff = 0, ci_low = 0, ci_high = 0;
};
F1Difference compare_macro_f1(const std::vector<int64_t>& labels, const std::vector<int64_t>& pred_a,
                              const std::vector<int64_t>& pred_b, int64_t num_classes,
                              int64_t bootstrap_samples = 1000, uint64_t seed = 12345);

// The bootstrap's pieces, public so that tests replay them outside (tests/reference/statistics_reference.cpp
// gives the same resamples to NumPy and scikit-learn).
//
// The resamples: resample s (0 <= s < samples) holds n indices into [0, n), drawn with replacement;
// its index i is the (s * n + i)-th draw of Generator(seed).below(n).
std::vector<std::vector<int64_t>> bootstrap_indices(int64_t n, int64_t samples, uint64_t seed);
// The same resamples handed to fn one at a time, in order, without holding them all (2000 resamples
// of 10,000 images would be 160 MB).
void for_each_bootstrap_resample(int64_t n, int64_t samples, uint64_t seed,
                                 const std::function<void(const std::vector<int64_t>& indices)>& fn);
// The q-quantile (q in [0, 1]) of values, the same as numpy.quantile(values, q) with its default
// method='linear' (Hyndman & Fan's type 7; numpy.percentile(values, 100 * q) is that too, where
// 100 * q / 100 rounds back to q, as it does for 2.5 and 97.5): sort, h = (N - 1) * q, j = floor(h),
// t = h - j, and interpolate between v[j] and v[j + 1] as numpy does (a + (b - a) t when t < 0.5,
// else b - (b - a)(1 - t)); h >= N - 1 gives the largest value. Throws dl::Error on no values or q
// outside [0, 1].
double percentile_linear(std::vector<double> values, double q);
// The 95% percentile interval: percentile_linear at 0.025 and 0.975.
struct Interval {
  double low = 0, high = 0;
};
Interval percentile_interval_95(const std::vector<double>& statistics);

// The most confused (true, predicted) pairs, largest count first, off-diagonal only; equal counts keep
// row-major order (smaller true class first, then smaller predicted class).
struct ConfusedPair {
  int64_t true_class, predicted_class, count;
};
std::vector<ConfusedPair> most_confused(const std::vector<std::vector<int64_t>>& confusion, size_t top);

}  // namespace dl::exp
