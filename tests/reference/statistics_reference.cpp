// The statistics behind the study's reports (experiments/lib/metrics.h) against scikit-learn, SciPy
// and NumPy, on cases written by tests/fixtures/make_statistics.py into statistics.json: the
// confusion matrix, per-class / macro / weighted precision, recall and F1, McNemar's test (exact and
// chi-square branch), the percentile rule, and the bootstrap intervals, first on the very resamples
// our generator draws (replayed in NumPy), then against scipy.stats.bootstrap's own resamples
// within Monte-Carlo error.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "experiments/lib/metrics.h"
#include "test_util.h"

using namespace dl::exp;
using nlohmann::json;

namespace {
// Counts (confusion, support, discordant pairs, resample indices, most_confused) must be equal.
// Metrics and p-values: relative 1e-12. Both sides do the same double arithmetic up to summation
// order (and libm's erfc against SciPy's igamc in the chi-square tail: 3e-14 at worst against
// 50-digit mpmath over b, c < 400), so the real differences are around 1e-15. p-values are judged
// relatively only (one is 2e-23). Elsewhere an absolute floor of 1e-15 serves values that are 0
// (a class never predicted) and differences of two numbers near 1 (macro-F1 difference, interval
// bounds), where cancellation leaves an absolute error of a few 1e-16.
constexpr double kRtol = 1e-12, kAtol = 1e-15;

// statistics.json, parsed once. nullopt with a reason: the case is skipped (DL_SKIP) by the caller.
struct Loaded {
  std::optional<json> doc;
  std::string skip_reason;
};
const Loaded& statistics_fixture() {
  static const Loaded loaded = [] {
    Loaded l;
    std::string dir = dl::test::fixtures_dir();
    if (dir.empty()) {
      l.skip_reason = "DL_FIXTURES_DIR is not set, so statistics.json is not there (ctest's make_torch_fixtures "
                      "writes it)";
      return l;
    }
    std::filesystem::path path = std::filesystem::path(dir) / "statistics.json";
    std::ifstream in(path);
    if (!in) return l;  // neither doc nor reason: the caller fails, naming the file
    json doc = json::parse(in);
    if (doc.contains("skipped")) {
      l.skip_reason = "make_statistics.py could not run: " + doc["skipped"].get<std::string>();
      return l;
    }
    l.doc = std::move(doc);
    return l;
  }();
  return loaded;
}

#define LOAD_STATISTICS_OR_SKIP(doc)                                                                           \
  const Loaded& loaded_ = statistics_fixture();                                                                \
  if (!loaded_.doc) {                                                                                          \
    if (!loaded_.skip_reason.empty()) DL_SKIP(loaded_.skip_reason);                                            \
    FAIL("statistics.json is missing from DL_FIXTURES_DIR='" << dl::test::fixtures_dir()                       \
                                                             << "'; run the make_torch_fixtures test first"); \
  }                                                                                                            \
  const json& doc = *loaded_.doc

// One fixture case's comparisons: every check is counted, every failure listed, and the worst
// difference (as a fraction of what is allowed) reported, by name.
struct CaseChecks {
  std::string name;
  int checks = 0;
  std::vector<std::string> failures;
  double worst_ratio = 0;  // |got - want| / (atol + rtol |want|)
  std::string worst = "none";

  explicit CaseChecks(std::string n) : name(std::move(n)) {}

  void num(const std::string& what, double got, double want, double rtol = kRtol, double atol = kAtol) {
    ++checks;
    double err = std::abs(got - want), allowed = atol + rtol * std::abs(want);
    bool ok = std::isfinite(got) && err <= allowed;  // a NaN fails
    double ratio = !ok ? INFINITY : err == 0 ? 0.0 : err / allowed;
    if (!ok && std::isfinite(err) && allowed > 0) ratio = err / allowed;
    std::string line = fmt::format("{}: got {:.17g}, expected {:.17g} (|difference| {:.3g}, allowed {:.3g})", what,
                                   got, want, err, allowed);
    if (ratio >= worst_ratio) {
      worst_ratio = ratio;
      worst = line;
    }
    if (!ok) failures.push_back(line);
  }
  void exact(const std::string& what, int64_t got, int64_t want) {
    ++checks;
    if (got != want) failures.push_back(fmt::format("{}: got {}, expected {} exactly", what, got, want));
  }
  void truth(const std::string& what, bool ok) {
    ++checks;
    if (!ok) failures.push_back(what);
  }
  // Ends the case: one doctest check that names the case, its failures and its worst difference.
  int finish() {
    std::string msg = fmt::format("case '{}': {} checks, {} failed; worst difference: {}", name, checks,
                                  failures.size(), worst);
    for (size_t i = 0; i < failures.size() && i < 12; ++i) msg += "\n  " + failures[i];
    if (failures.size() > 12) msg += fmt::format("\n  ... and {} more", failures.size() - 12);
    CHECK_MESSAGE(failures.empty(), msg);
    if (failures.empty()) MESSAGE(msg);
    return checks;
  }
};

template <typename T>
std::vector<T> vec(const json& j) {
  return j.get<std::vector<T>>();
}

void check_metrics(CaseChecks& c, const std::string& via, const Metrics& m, const json& e) {
  int64_t k = e["num_classes"].get<int64_t>();
  auto conf = e["confusion"].get<std::vector<std::vector<int64_t>>>();
  c.exact(via + " num_classes", m.num_classes, k);
  c.exact(via + " count", m.count, e["count"].get<int64_t>());
  c.truth(via + " confusion is " + std::to_string(k) + "x" + std::to_string(k),
          m.confusion.size() == static_cast<size_t>(k) && m.per_class.size() == static_cast<size_t>(k));
  if (m.confusion.size() != static_cast<size_t>(k) || m.per_class.size() != static_cast<size_t>(k)) return;
  for (int64_t t = 0; t < k; ++t)
    for (int64_t p = 0; p < k; ++p)
      c.exact(fmt::format("{} confusion[{}][{}]", via, t, p), m.confusion[t][p], conf[t][p]);
  c.num(via + " accuracy", m.accuracy, e["accuracy"].get<double>());
  auto prec = vec<double>(e["precision"]), rec = vec<double>(e["recall"]), f1 = vec<double>(e["f1"]);
  auto support = vec<int64_t>(e["support"]);
  for (int64_t i = 0; i < k; ++i) {
    c.num(fmt::format("{} precision[{}]", via, i), m.per_class[i].precision, prec[i]);
    c.num(fmt::format("{} recall[{}]", via, i), m.per_class[i].recall, rec[i]);
    c.num(fmt::format("{} f1[{}]", via, i), m.per_class[i].f1, f1[i]);
    c.exact(fmt::format("{} support[{}]", via, i), m.per_class[i].support, support[i]);
  }
  for (auto [avg, got] : {std::pair{"macro", m.macro}, std::pair{"weighted", m.weighted}}) {
    const json& want = e[avg];
    c.num(fmt::format("{} {} precision", via, avg), got.precision, want["precision"].get<double>());
    c.num(fmt::format("{} {} recall", via, avg), got.recall, want["recall"].get<double>());
    c.num(fmt::format("{} {} f1", via, avg), got.f1, want["f1"].get<double>());
    c.exact(fmt::format("{} {} support", via, avg), got.support, e["count"].get<int64_t>());
  }
}

void check_most_confused(CaseChecks& c, const std::vector<std::vector<int64_t>>& conf, const json& expected,
                         size_t top) {
  auto got = most_confused(conf, top);
  size_t want_n = std::min(top, expected.size());
  c.exact(fmt::format("most_confused(top {}) length", top), static_cast<int64_t>(got.size()),
          static_cast<int64_t>(want_n));
  for (size_t i = 0; i < std::min(got.size(), want_n); ++i) {
    auto w = vec<int64_t>(expected[i]);
    c.truth(fmt::format("most_confused(top {})[{}]: got ({}, {}, {}), expected ({}, {}, {})", top, i,
                        got[i].true_class, got[i].predicted_class, got[i].count, w[0], w[1], w[2]),
            got[i].true_class == w[0] && got[i].predicted_class == w[1] && got[i].count == w[2]);
  }
}

std::vector<uint8_t> bools(const json& j) {
  std::vector<uint8_t> v;
  for (const auto& x : j) v.push_back(static_cast<uint8_t>(x.get<int>()));
  return v;
}
}  // namespace

TEST_CASE("reference: confusion matrix, per-class/macro/weighted metrics and most_confused vs scikit-learn") {
  LOAD_STATISTICS_OR_SKIP(doc);
  REQUIRE(doc["classification"].size() >= 8);
  int total = 0;
  for (const auto& e : doc["classification"]) {
    CaseChecks c(e["name"].get<std::string>());
    int64_t k = e["num_classes"].get<int64_t>();
    Metrics m = compute_metrics(vec<int64_t>(e["labels"]), vec<int64_t>(e["predictions"]), k);
    check_metrics(c, "compute_metrics", m, e);
    auto conf = e["confusion"].get<std::vector<std::vector<int64_t>>>();
    check_metrics(c, "metrics_from_confusion", metrics_from_confusion(conf), e);
    check_most_confused(c, conf, e["most_confused"], static_cast<size_t>(k * k));
    check_most_confused(c, conf, e["most_confused"], 3);
    total += c.finish();
  }
  MESSAGE(total, " checks against scikit-learn ", doc["versions"]["sklearn"].get<std::string>());
}

TEST_CASE("reference: compare_paired's McNemar test (exact and chi-square branch) vs SciPy") {
  LOAD_STATISTICS_OR_SKIP(doc);
  REQUIRE(doc["mcnemar"].size() >= 8);
  int total = 0, exact_branch = 0, chi2_branch = 0;
  for (const auto& e : doc["mcnemar"]) {
    CaseChecks c(e["name"].get<std::string>());
    PairedComparison r = compare_paired(bools(e["correct_a"]), bools(e["correct_b"]), 0, 1);
    c.exact("a_only", r.a_only, e["a_only"].get<int64_t>());
    c.exact("b_only", r.b_only, e["b_only"].get<int64_t>());
    c.exact("bootstrap_samples", r.bootstrap_samples, 0);
    c.num("diff", r.diff, e["diff"].get<double>());
    c.num("chi2", r.mcnemar_chi2, e["chi2"].get<double>());
    std::string method = e["method"].get<std::string>();
    c.num("p (" + method + ")", r.mcnemar_p, e["p"].get<double>(), kRtol, 0.0);  // relative only: p can be 1e-23
    int64_t disc = r.a_only + r.b_only;
    c.truth("the branch: fewer than 25 discordant pairs is the exact test",
            (method == "exact") == (disc > 0 && disc < 25));
    exact_branch += method == "exact";
    chi2_branch += method == "chi2";
    total += c.finish();
  }
  CHECK(exact_branch >= 3);  // both branches are exercised
  CHECK(chi2_branch >= 3);
  MESSAGE(total, " checks against SciPy ", doc["versions"]["scipy"].get<std::string>());
}

TEST_CASE("reference: percentile_linear is numpy.quantile(method='linear')") {
  LOAD_STATISTICS_OR_SKIP(doc);
  int total = 0;
  for (const auto& e : doc["percentiles"]) {
    CaseChecks c(e["name"].get<std::string>());
    auto values = vec<double>(e["values"]);
    auto qs = vec<double>(e["q"]), want = vec<double>(e["expected"]);
    // the same arithmetic as numpy's, operation for operation: equal to the last bit
    for (size_t i = 0; i < qs.size(); ++i)
      c.num(fmt::format("q = {}", qs[i]), percentile_linear(values, qs[i]), want[i], 0.0, 0.0);
    total += c.finish();
  }
  CHECK(total >= 50);
  dl::test::check_throws_with([] { percentile_linear({}, 0.5); }, {"no values"});
  dl::test::check_throws_with([] { percentile_linear({1.0}, 1.5); }, {"q must be in [0, 1], got 1.5"});
  MESSAGE(total, " checks against NumPy ", doc["versions"]["numpy"].get<std::string>());
}

TEST_CASE("reference: bootstrap intervals on our resamples, replayed in NumPy and scikit-learn") {
  LOAD_STATISTICS_OR_SKIP(doc);
  REQUIRE(doc["bootstrap_exact"].size() >= 4);
  int total = 0;
  for (const auto& e : doc["bootstrap_exact"]) {
    CaseChecks c(e["name"].get<std::string>());
    int64_t n = e["n"].get<int64_t>(), samples = e["samples"].get<int64_t>();
    uint64_t seed = e["seed"].get<uint64_t>();
    // the resamples: the fixture's Python re-implementation of our generator drew these
    auto want_idx = vec<int64_t>(e["indices"]);
    auto idx = bootstrap_indices(n, samples, seed);
    c.exact("number of resamples", static_cast<int64_t>(idx.size()), samples);
    bool same = want_idx.size() == static_cast<size_t>(n * samples);
    for (int64_t s = 0; same && s < static_cast<int64_t>(idx.size()); ++s) {
      for (int64_t i = 0; i < n && same; ++i) {
        if (idx[s][i] != want_idx[s * n + i]) {
          same = false;
          c.exact(fmt::format("resample {} index {}", s, i), idx[s][i], want_idx[s * n + i]);
        }
      }
    }
    c.truth("bootstrap_indices equal the replayed draws", same);
    size_t streamed = 0;
    for_each_bootstrap_resample(n, samples, seed, [&](const std::vector<int64_t>& r) {
      if (streamed < idx.size() && r != idx[streamed]) c.truth(fmt::format("streamed resample {}", streamed), false);
      ++streamed;
    });
    c.exact("streamed resamples", static_cast<int64_t>(streamed), samples);

    double lo, hi, diff;
    if (e["kind"] == "paired") {
      auto r = compare_paired(bools(e["correct_a"]), bools(e["correct_b"]), samples, seed);
      c.exact("bootstrap_samples", r.bootstrap_samples, samples);
      lo = r.ci_low, hi = r.ci_high, diff = r.diff;
    } else {
      auto r = compare_macro_f1(vec<int64_t>(e["labels"]), vec<int64_t>(e["pred_a"]), vec<int64_t>(e["pred_b"]),
                                e["num_classes"].get<int64_t>(), samples, seed);
      lo = r.ci_low, hi = r.ci_high, diff = r.diff;
    }
    c.num("diff", diff, e["diff"].get<double>());
    c.num("ci_low", lo, e["ci_low"].get<double>());
    c.num("ci_high", hi, e["ci_high"].get<double>());
    c.truth(fmt::format("ci_low {} <= ci_high {}", lo, hi), lo <= hi);
    total += c.finish();
  }
  MESSAGE(total, " checks");
}

// SciPy draws its own resamples, so here the two intervals agree only up to Monte-Carlo error.
// The percentile estimate of the q-quantile from B resamples has standard deviation
// sqrt(q (1 - q) / B) / f(x_q), f the density of the bootstrap distribution at its quantile. Taking
// that distribution as normal with standard deviation sigma (SciPy's standard_error),
// f(x_q) = phi(z_q) / sigma, and for q = 0.025 or 0.975: sqrt(0.025 * 0.975) / phi(1.95996) = 2.6713,
// so sd = 2.6713 sigma / sqrt(B). Ours (B = 2000) and SciPy's (B = 20000) are independent:
// sd = 2.6713 sigma sqrt(1/2000 + 1/20000). Allowed: 4 sd (a two-sided 6e-5 chance per bound), plus
// 1/n, the grid the statistic moves on (an accuracy difference is a multiple of 1/n). The check must
// be able to fail: the allowance is also required to be under a tenth of the interval's width.
TEST_CASE("reference: bootstrap intervals (2000 resamples) agree with scipy.stats.bootstrap within Monte-Carlo "
          "error") {
  LOAD_STATISTICS_OR_SKIP(doc);
  REQUIRE(doc["bootstrap_scipy"].size() >= 2);
  constexpr int64_t kOurs = 2000;
  constexpr uint64_t kSeed = 2024;  // compare's seed
  int total = 0;
  for (const auto& e : doc["bootstrap_scipy"]) {
    CaseChecks c(e["name"].get<std::string>());
    double n = e["n"].get<double>(), sigma = e["scipy_standard_error"].get<double>();
    double theirs = e["scipy_resamples"].get<double>();
    double sd = 2.6713 * sigma * std::sqrt(1.0 / kOurs + 1.0 / theirs);
    double allowed = 4 * sd + 1.0 / n;
    double lo, hi, diff;
    if (e["kind"] == "paired") {
      auto r = compare_paired(bools(e["correct_a"]), bools(e["correct_b"]), kOurs, kSeed);
      lo = r.ci_low, hi = r.ci_high, diff = r.diff;
    } else {
      auto r = compare_macro_f1(vec<int64_t>(e["labels"]), vec<int64_t>(e["pred_a"]), vec<int64_t>(e["pred_b"]),
                                e["num_classes"].get<int64_t>(), kOurs, kSeed);
      lo = r.ci_low, hi = r.ci_high, diff = r.diff;
    }
    double s_lo = e["scipy_low"].get<double>(), s_hi = e["scipy_high"].get<double>();
    c.num("diff (point estimate, exact)", diff, e["diff"].get<double>());
    c.num("ci_low vs SciPy's", lo, s_lo, 0.0, allowed);
    c.num("ci_high vs SciPy's", hi, s_hi, 0.0, allowed);
    c.truth(fmt::format("the allowance {:.3g} is under a tenth of SciPy's interval width {:.3g}", allowed,
                        s_hi - s_lo),
            allowed < 0.1 * (s_hi - s_lo));
    c.truth(fmt::format("the point estimate {} lies inside our interval [{}, {}]", diff, lo, hi),
            lo <= diff && diff <= hi);
    total += c.finish();
  }
  MESSAGE(total, " checks");
}

TEST_CASE("the bootstrap and compare_macro_f1 reject what they cannot use") {
  dl::test::check_throws_with([] { bootstrap_indices(-1, 3, 1); }, {"-1 images"});
  dl::test::check_throws_with([] { bootstrap_indices(5, -2, 1); }, {"-2 resamples"});
  dl::test::check_throws_with([] { compare_macro_f1({}, {}, {}, 3); }, {"no images"});
  dl::test::check_throws_with([] { compare_macro_f1({0, 1}, {0}, {0, 1}, 2); }, {"2 labels but 1 predictions"});
  CHECK(bootstrap_indices(4, 0, 1).empty());
  auto r = compare_paired({1, 0, 1}, {1, 1, 0}, 0, 1);  // no resamples: no interval
  CHECK(r.ci_low == 0.0);
  CHECK(r.ci_high == 0.0);
}
