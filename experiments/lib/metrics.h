#pragma once
// Classification metrics computed from predictions, and the statistics the comparison uses to
// say whether one model beats another on the shared test set.
#include <cstdint>
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
// A class never predicted has precision 0 (as scikit-learn's zero_division=0).
Metrics compute_metrics(const std::vector<int64_t>& labels, const std::vector<int64_t>& predictions,
                        int64_t num_classes);

// Reads back a confusion matrix: the metrics it implies (used to cross-check run folders).
Metrics metrics_from_confusion(const std::vector<std::vector<int64_t>>& confusion);

// Paired comparison of two models on the same test images (correct[i] = prediction i is right).
struct PairedComparison {
  double diff = 0;              // accuracy(a) - accuracy(b)
  double ci_low = 0, ci_high = 0;  // 95% bootstrap percentile interval of diff
  int64_t a_only = 0, b_only = 0;  // discordant pairs: a right & b wrong, and the reverse
  double mcnemar_chi2 = 0;      // with continuity correction
  double mcnemar_p = 1;         // exact binomial test when discordant pairs < 25, else chi2(1)
  int64_t bootstrap_samples = 0;
};
PairedComparison compare_paired(const std::vector<uint8_t>& correct_a, const std::vector<uint8_t>& correct_b,
                                int64_t bootstrap_samples = 2000, uint64_t seed = 12345);

// Bootstrap 95% interval of the difference in macro F1 between two models on the same images.
struct F1Difference {
  double diff = 0, ci_low = 0, ci_high = 0;
};
F1Difference compare_macro_f1(const std::vector<int64_t>& labels, const std::vector<int64_t>& pred_a,
                              const std::vector<int64_t>& pred_b, int64_t num_classes,
                              int64_t bootstrap_samples = 1000, uint64_t seed = 12345);

// The most confused (true, predicted) pairs, largest count first, off-diagonal only.
struct ConfusedPair {
  int64_t true_class, predicted_class, count;
};
std::vector<ConfusedPair> most_confused(const std::vector<std::vector<int64_t>>& confusion, size_t top);

}  // namespace dl::exp
