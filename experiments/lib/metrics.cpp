#include "experiments/lib/metrics.h"

#include <algorithm>
#include <cmath>

#include "tensor/error.h"
#include "tensor/generator.h"

namespace dl::exp {

Metrics metrics_from_confusion(const std::vector<std::vector<int64_t>>& confusion) {
  Metrics m;
  m.num_classes = static_cast<int64_t>(confusion.size());
  m.confusion = confusion;
  m.per_class.resize(confusion.size());
  int64_t correct = 0, total = 0;
  std::vector<int64_t> predicted(confusion.size(), 0);
  for (size_t t = 0; t < confusion.size(); ++t) {
    if (confusion[t].size() != confusion.size()) fail("confusion matrix is not square");
    for (size_t p = 0; p < confusion.size(); ++p) {
      total += confusion[t][p];
      predicted[p] += confusion[t][p];
      if (t == p) correct += confusion[t][p];
      m.per_class[t].support += confusion[t][p];
    }
  }
  m.count = total;
  m.accuracy = total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
  for (size_t c = 0; c < confusion.size(); ++c) {
    auto& pc = m.per_class[c];
    double tp = static_cast<double>(confusion[c][c]);
    pc.precision = predicted[c] ? tp / static_cast<double>(predicted[c]) : 0.0;
    pc.recall = pc.support ? tp / static_cast<double>(pc.support) : 0.0;
    pc.f1 = pc.precision + pc.recall > 0 ? 2 * pc.precision * pc.recall / (pc.precision + pc.recall) : 0.0;
    double n = static_cast<double>(confusion.size());
    m.macro.precision += pc.precision / n;
    m.macro.recall += pc.recall / n;
    m.macro.f1 += pc.f1 / n;
    double w = total ? static_cast<double>(pc.support) / static_cast<double>(total) : 0.0;
    m.weighted.precision += pc.precision * w;
    m.weighted.recall += pc.recall * w;
    m.weighted.f1 += pc.f1 * w;
  }
  m.macro.support = m.weighted.support = total;
  return m;
}

Metrics compute_metrics(const std::vector<int64_t>& labels, const std::vector<int64_t>& predictions,
                        int64_t num_classes) {
  if (labels.size() != predictions.size())
    fail("compute_metrics: {} labels but {} predictions", labels.size(), predictions.size());
  if (num_classes <= 0) fail("compute_metrics: num_classes must be positive, got {}", num_classes);
  std::vector<std::vector<int64_t>> conf(num_classes, std::vector<int64_t>(num_classes, 0));
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes || predictions[i] < 0 || predictions[i] >= num_classes)
      fail("compute_metrics: sample {} has label {} / prediction {} outside [0, {})", i, labels[i], predictions[i],
           num_classes);
    conf[labels[i]][predictions[i]]++;
  }
  return metrics_from_confusion(conf);
}

nlohmann::json Metrics::to_json(const std::vector<std::string>& class_names) const {
  nlohmann::json j;
  j["count"] = count;
  j["accuracy"] = accuracy;
  auto cm = [](const ClassMetrics& c) {
    return nlohmann::json{{"precision", c.precision}, {"recall", c.recall}, {"f1", c.f1}, {"support", c.support}};
  };
  j["macro"] = cm(macro);
  j["weighted"] = cm(weighted);
  nlohmann::json pc = nlohmann::json::array();
  for (size_t c = 0; c < per_class.size(); ++c) {
    auto e = cm(per_class[c]);
    e["class"] = c < class_names.size() ? class_names[c] : std::to_string(c);
    pc.push_back(e);
  }
  j["per_class"] = pc;
  return j;
}

namespace {
// Two-sided exact binomial p-value for k successes out of n at p = 0.5.
double binomial_two_sided(int64_t k, int64_t n) {
  if (n == 0) return 1.0;
  int64_t m = std::min(k, n - k);
  double p = 0;
  for (int64_t i = 0; i <= m; ++i) p += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  return std::min(1.0, 2 * p);
}
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}
}  // namespace

PairedComparison compare_paired(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, int64_t samples,
                                uint64_t seed) {
  if (a.size() != b.size() || a.empty())
    fail("compare_paired: the two models were scored on {} and {} images; they need the same test set", a.size(),
         b.size());
  PairedComparison r;
  int64_t n = static_cast<int64_t>(a.size());
  double sa = 0, sb = 0;
  for (int64_t i = 0; i < n; ++i) {
    sa += a[i];
    sb += b[i];
    if (a[i] && !b[i]) r.a_only++;
    if (!a[i] && b[i]) r.b_only++;
  }
  r.diff = (sa - sb) / static_cast<double>(n);
  Generator g(seed);
  std::vector<double> diffs(samples);
  for (int64_t s = 0; s < samples; ++s) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; ++i) {
      uint64_t j = g.below(static_cast<uint64_t>(n));
      d += static_cast<int64_t>(a[j]) - static_cast<int64_t>(b[j]);
    }
    diffs[s] = static_cast<double>(d) / static_cast<double>(n);
  }
  r.bootstrap_samples = samples;
  if (samples > 0) {
    r.ci_low = percentile(diffs, 0.025);
    r.ci_high = percentile(diffs, 0.975);
  }
  int64_t disc = r.a_only + r.b_only;
  if (disc > 0) {
    double num = std::abs(static_cast<double>(r.a_only - r.b_only)) - 1.0;
    r.mcnemar_chi2 = std::max(0.0, num) * std::max(0.0, num) / static_cast<double>(disc);
  }
  if (disc < 25) {
    r.mcnemar_p = binomial_two_sided(r.a_only, disc);
  } else {
    r.mcnemar_p = std::erfc(std::sqrt(r.mcnemar_chi2 / 2.0));  // chi-square with 1 dof
  }
  return r;
}

F1Difference compare_macro_f1(const std::vector<int64_t>& labels, const std::vector<int64_t>& pa,
                              const std::vector<int64_t>& pb, int64_t num_classes, int64_t samples, uint64_t seed) {
  F1Difference r;
  r.diff = compute_metrics(labels, pa, num_classes).macro.f1 - compute_metrics(labels, pb, num_classes).macro.f1;
  Generator g(seed);
  size_t n = labels.size();
  std::vector<double> diffs;
  std::vector<int64_t> l(n), a(n), b(n);
  for (int64_t s = 0; s < samples; ++s) {
    for (size_t i = 0; i < n; ++i) {
      size_t j = static_cast<size_t>(g.below(n));
      l[i] = labels[j];
      a[i] = pa[j];
      b[i] = pb[j];
    }
    diffs.push_back(compute_metrics(l, a, num_classes).macro.f1 - compute_metrics(l, b, num_classes).macro.f1);
  }
  if (!diffs.empty()) {
    r.ci_low = percentile(diffs, 0.025);
    r.ci_high = percentile(diffs, 0.975);
  }
  return r;
}

std::vector<ConfusedPair> most_confused(const std::vector<std::vector<int64_t>>& confusion, size_t top) {
  std::vector<ConfusedPair> pairs;
  for (size_t t = 0; t < confusion.size(); ++t)
    for (size_t p = 0; p < confusion[t].size(); ++p)
      if (t != p && confusion[t][p] > 0)
        pairs.push_back({static_cast<int64_t>(t), static_cast<int64_t>(p), confusion[t][p]});
  std::stable_sort(pairs.begin(), pairs.end(), [](const auto& x, const auto& y) { return x.count > y.count; });
  if (pairs.size() > top) pairs.resize(top);
  return pairs;
}

}  // namespace dl::exp
