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
// Two-sided exact binomial p-value for k successes in n trials at p = 1/2. For p = 1/2 the rule of
// scipy.stats.binomtest (add every outcome no more likely than k) is twice the smaller tail, capped at
// 1. The tail is summed exactly as integers C(n, i) and scaled by 2^-n, so the only rounding is the last.
double binomial_two_sided(int64_t k, int64_t n) {
  DL_CHECK(n >= 0 && n <= 60 && k >= 0 && k <= n, "binomial_two_sided: k or n out of range");
  if (n == 0) return 1.0;
  int64_t m = std::min(k, n - k);
  uint64_t choose = 1, tail = 0;  // C(n, i) and the sum of C(n, 0..i); C(60, 30) < 2^60
  for (int64_t i = 0; i <= m; ++i) {
    tail += choose;
    choose = choose * static_cast<uint64_t>(n - i) / static_cast<uint64_t>(i + 1);
  }
  return std::min(1.0, std::ldexp(static_cast<double>(2 * tail), -static_cast<int>(n)));
}
}  // namespace

void for_each_bootstrap_resample(int64_t n, int64_t samples, uint64_t seed,
                                 const std::function<void(const std::vector<int64_t>& indices)>& fn) {
  if (n < 0 || samples < 0) fail("bootstrap: {} images and {} resamples; neither may be negative", n, samples);
  Generator g(seed);
  std::vector<int64_t> indices(static_cast<size_t>(n));
  for (int64_t s = 0; s < samples; ++s) {
    for (auto& j : indices) j = static_cast<int64_t>(g.below(static_cast<uint64_t>(n)));
    fn(indices);
  }
}

std::vector<std::vector<int64_t>> bootstrap_indices(int64_t n, int64_t samples, uint64_t seed) {
  std::vector<std::vector<int64_t>> all;
  for_each_bootstrap_resample(n, samples, seed, [&](const std::vector<int64_t>& idx) { all.push_back(idx); });
  return all;
}

double percentile_linear(std::vector<double> v, double q) {
  if (v.empty()) fail("percentile_linear: no values");
  if (!(q >= 0.0 && q <= 1.0)) fail("percentile_linear: q must be in [0, 1], got {}", q);
  std::sort(v.begin(), v.end());
  double h = static_cast<double>(v.size() - 1) * q;
  if (h >= static_cast<double>(v.size() - 1)) return v.back();
  size_t j = static_cast<size_t>(std::floor(h));
  double t = h - static_cast<double>(j), a = v[j], b = v[j + 1], d = b - a;
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;  // numpy's _lerp, both branches
}

Interval percentile_interval_95(const std::vector<double>& statistics) {
  return {percentile_linear(statistics, 0.025), percentile_linear(statistics, 0.975)};
}

PairedComparison compare_paired(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, int64_t samples,
                                uint64_t seed) {
  if (a.size() != b.size() || a.empty())
    fail("compare_paired: the two models were scored on {} and {} images; they need the same test set", a.size(),
         b.size());
  PairedComparison r;
  int64_t n = static_cast<int64_t>(a.size());
  double sa = 0, sb = 0;
  for (int64_t i = 0; i < n; ++i) {
    sa += a[i] != 0;
    sb += b[i] != 0;
    if (a[i] && !b[i]) r.a_only++;
    if (!a[i] && b[i]) r.b_only++;
  }
  r.diff = (sa - sb) / static_cast<double>(n);
  std::vector<double> diffs;
  diffs.reserve(static_cast<size_t>(std::max<int64_t>(samples, 0)));
  for_each_bootstrap_resample(n, samples, seed, [&](const std::vector<int64_t>& idx) {
    int64_t d = 0;
    for (int64_t j : idx) d += static_cast<int64_t>(a[j] != 0) - static_cast<int64_t>(b[j] != 0);
    diffs.push_back(static_cast<double>(d) / static_cast<double>(n));
  });
  r.bootstrap_samples = samples;
  if (!diffs.empty()) {
    Interval ci = percentile_interval_95(diffs);
    r.ci_low = ci.low;
    r.ci_high = ci.high;
  }
  int64_t disc = r.a_only + r.b_only;
  if (disc > 0) {
    double num = std::max(0.0, std::abs(static_cast<double>(r.a_only - r.b_only)) - 1.0);
    r.mcnemar_chi2 = num * num / static_cast<double>(disc);
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
  if (labels.empty()) fail("compare_macro_f1: no images");
  F1Difference r;
  r.diff = compute_metrics(labels, pa, num_classes).macro.f1 - compute_metrics(labels, pb, num_classes).macro.f1;
  size_t n = labels.size();
  std::vector<double> diffs;
  std::vector<int64_t> l(n), a(n), b(n);
  for_each_bootstrap_resample(static_cast<int64_t>(n), samples, seed, [&](const std::vector<int64_t>& idx) {
    for (size_t i = 0; i < n; ++i) {
      size_t j = static_cast<size_t>(idx[i]);
      l[i] = labels[j];
      a[i] = pa[j];
      b[i] = pb[j];
    }
    diffs.push_back(compute_metrics(l, a, num_classes).macro.f1 - compute_metrics(l, b, num_classes).macro.f1);
  });
  if (!diffs.empty()) {
    Interval ci = percentile_interval_95(diffs);
    r.ci_low = ci.low;
    r.ci_high = ci.high;
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
