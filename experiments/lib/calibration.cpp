#include "experiments/lib/calibration.h"

#include <algorithm>
#include <cmath>

#include "tensor/error.h"

namespace dl::exp {

nlohmann::json CalibrationStats::to_json() const {
  nlohmann::json b = nlohmann::json::array();
  for (const auto& x : bins)
    b.push_back({{"low", x.low}, {"high", x.high}, {"count", x.count}, {"confidence", x.confidence},
                 {"accuracy", x.accuracy}});
  return {{"count", count}, {"accuracy", accuracy}, {"ece", ece}, {"nll", nll}, {"mean_confidence", mean_confidence},
          {"bins", b}};
}

namespace {
void check_sizes(const char* what, size_t values, const std::vector<int64_t>& labels, int64_t classes) {
  if (classes < 1) fail("{}: {} classes", what, classes);
  if (labels.empty()) fail("{}: no rows", what);
  if (values != labels.size() * static_cast<size_t>(classes))
    fail("{}: {} values for {} labels of {} classes", what, values, labels.size(), classes);
  for (int64_t y : labels)
    if (y < 0 || y >= classes) fail("{}: label {} outside [0, {})", what, y, classes);
}
}  // namespace

CalibrationStats calibration_from_probs(const std::vector<double>& probs, const std::vector<int64_t>& labels,
                                        int64_t classes, int64_t bins) {
  check_sizes("calibration_from_probs", probs.size(), labels, classes);
  if (bins < 1) fail("calibration_from_probs: {} bins", bins);
  CalibrationStats s;
  s.count = static_cast<int64_t>(labels.size());
  const double step = 1.0 / static_cast<double>(bins);
  std::vector<double> edges(bins + 1);
  for (int64_t i = 0; i < bins; ++i) edges[i] = static_cast<double>(i) * step;
  edges[bins] = 1.0;
  std::vector<double> conf_sum(bins, 0), correct(bins, 0);
  std::vector<int64_t> count(bins, 0);
  double right = 0, nll = 0, conf_all = 0;
  for (size_t r = 0; r < labels.size(); ++r) {
    const double* p = probs.data() + r * classes;
    int64_t arg = 0;
    for (int64_t c = 1; c < classes; ++c)
      if (p[c] > p[arg]) arg = c;
    double conf = p[arg];
    bool ok = arg == labels[r];
    right += ok;
    conf_all += conf;
    nll -= std::log(std::max(p[labels[r]], 1e-300));
    // the bin with edges[b] < conf <= edges[b + 1] (conf <= 0 into the first, > 1 into the last)
    int64_t b = std::upper_bound(edges.begin(), edges.end(), conf, [](double v, double e) { return v <= e; }) -
                edges.begin() - 1;
    b = std::clamp<int64_t>(b, 0, bins - 1);
    ++count[b];
    conf_sum[b] += conf;
    correct[b] += ok;
  }
  const double n = static_cast<double>(s.count);
  s.accuracy = right / n;
  s.nll = nll / n;
  s.mean_confidence = conf_all / n;
  for (int64_t b = 0; b < bins; ++b) {
    ReliabilityBin rb{edges[b], edges[b + 1], count[b], 0, 0};
    if (count[b]) {
      rb.confidence = conf_sum[b] / static_cast<double>(count[b]);
      rb.accuracy = correct[b] / static_cast<double>(count[b]);
      s.ece += static_cast<double>(count[b]) / n * std::abs(rb.accuracy - rb.confidence);
    }
    s.bins.push_back(rb);
  }
  return s;
}

std::vector<int64_t> argmax_rows(const std::vector<double>& values, int64_t classes) {
  if (classes < 1 || values.size() % static_cast<size_t>(classes) != 0)
    fail("argmax_rows: {} values are not rows of {} classes", values.size(), classes);
  std::vector<int64_t> out(values.size() / static_cast<size_t>(classes));
  for (size_t r = 0; r < out.size(); ++r) {
    const double* p = values.data() + r * classes;
    out[r] = std::max_element(p, p + classes) - p;  // the first of equal maxima
  }
  return out;
}

std::vector<double> softmax_rows(const std::vector<double>& logits, int64_t classes, double temperature) {
  if (classes < 1 || logits.size() % static_cast<size_t>(classes)) fail("softmax_rows: {} values for {} classes", logits.size(), classes);
  if (!(temperature > 0)) fail("softmax_rows: temperature {} is not positive", temperature);
  std::vector<double> out(logits.size());
  for (size_t r = 0; r < logits.size() / classes; ++r) {
    const double* z = logits.data() + r * classes;
    double* o = out.data() + r * classes;
    double m = *std::max_element(z, z + classes), s = 0;
    for (int64_t c = 0; c < classes; ++c) s += o[c] = std::exp((z[c] - m) / temperature);
    for (int64_t c = 0; c < classes; ++c) o[c] /= s;
  }
  return out;
}

double nll_at_temperature(const std::vector<double>& logits, const std::vector<int64_t>& labels, int64_t classes,
                          double temperature) {
  check_sizes("nll_at_temperature", logits.size(), labels, classes);
  if (!(temperature > 0)) fail("nll_at_temperature: temperature {} is not positive", temperature);
  double total = 0;
  for (size_t r = 0; r < labels.size(); ++r) {
    const double* z = logits.data() + r * classes;
    double m = *std::max_element(z, z + classes), s = 0;
    for (int64_t c = 0; c < classes; ++c) s += std::exp((z[c] - m) / temperature);
    total += m / temperature + std::log(s) - z[labels[r]] / temperature;
  }
  return total / static_cast<double>(labels.size());
}

CalibrationStats calibration_from_logits(const std::vector<double>& logits, const std::vector<int64_t>& labels,
                                         int64_t classes, double temperature, int64_t bins) {
  check_sizes("calibration_from_logits", logits.size(), labels, classes);
  CalibrationStats s = calibration_from_probs(softmax_rows(logits, classes, temperature), labels, classes, bins);
  s.nll = nll_at_temperature(logits, labels, classes, temperature);  // exact, not through rounded probabilities
  return s;
}

TemperatureFit fit_temperature(const std::vector<double>& logits, const std::vector<int64_t>& labels, int64_t classes,
                               double t_min, double t_max, double tol) {
  if (!(t_min > 0 && t_max > t_min)) fail("fit_temperature: bad bracket [{}, {}]", t_min, t_max);
  TemperatureFit f;
  auto nll = [&](double log_t) {
    ++f.evaluations;
    return nll_at_temperature(logits, labels, classes, std::exp(log_t));
  };
  const double invphi = (std::sqrt(5.0) - 1) / 2;
  double a = std::log(t_min), b = std::log(t_max);
  double c = b - invphi * (b - a), d = a + invphi * (b - a), fc = nll(c), fd = nll(d);
  while (b - a > tol) {
    if (fc <= fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - invphi * (b - a);
      fc = nll(c);
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + invphi * (b - a);
      fd = nll(d);
    }
  }
  double best = (a + b) / 2;
  f.temperature = std::exp(best);
  f.nll = nll(best);
  f.nll_at_1 = nll(0.0);
  const double lo = std::log(t_min), hi = std::log(t_max);
  f.at_bound = best - lo < 10 * tol || hi - best < 10 * tol;
  return f;
}

}  // namespace dl::exp
