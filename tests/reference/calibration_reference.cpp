// The extended study's calibration statistics (experiments/lib/calibration.h) against NumPy and
// SciPy, on cases written by tests/fixtures/make_calibration.py into calibration.json: ECE over 15
// equal-width bins and its per-bin counts, NLL, and the temperature of scipy.optimize's bounded
// scalar minimiser against our golden-section search.
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "experiments/lib/calibration.h"
#include "test_util.h"

using namespace dl::exp;
using nlohmann::json;

namespace {
struct Loaded {
  std::optional<json> doc;
  std::string skip_reason;
};
const Loaded& calibration_fixture() {
  static const Loaded loaded = [] {
    Loaded l;
    std::string dir = dl::test::fixtures_dir();
    if (dir.empty()) {
      l.skip_reason = "DL_FIXTURES_DIR is not set, so calibration.json is not there (ctest's make_torch_fixtures writes it)";
      return l;
    }
    std::ifstream in(std::filesystem::path(dir) / "calibration.json");
    if (!in) return l;
    json doc = json::parse(in);
    if (doc.contains("skipped")) {
      l.skip_reason = "make_calibration.py could not run: " + doc["skipped"].get<std::string>();
      return l;
    }
    l.doc = std::move(doc);
    return l;
  }();
  return loaded;
}
#define LOAD_CALIBRATION_OR_SKIP(doc)                                                                        \
  const Loaded& loaded_ = calibration_fixture();                                                             \
  if (!loaded_.doc) {                                                                                        \
    if (!loaded_.skip_reason.empty()) DL_SKIP(loaded_.skip_reason);                                          \
    FAIL("calibration.json is missing from DL_FIXTURES_DIR='" << dl::test::fixtures_dir()                     \
                                                              << "'; run the make_torch_fixtures test first"); \
  }                                                                                                          \
  const json& doc = *loaded_.doc
}  // namespace

TEST_CASE("calibration reference: ECE, NLL and temperature against NumPy and SciPy") {
  LOAD_CALIBRATION_OR_SKIP(doc);
  REQUIRE(doc["logit_cases"].size() >= 4);
  for (const auto& e : doc["logit_cases"]) {
    INFO("case ", e["name"].get<std::string>());
    auto z = e["logits"].get<std::vector<double>>();
    auto y = e["labels"].get<std::vector<int64_t>>();
    int64_t k = e["classes"].get<int64_t>();
    CalibrationStats s = calibration_from_logits(z, y, k, 1.0, 15);
    // same bins, same sums up to summation order
    CHECK(s.ece == doctest::Approx(e["ece_T1"].get<double>()).epsilon(1e-12));
    CHECK(s.nll == doctest::Approx(e["nll_T1"].get<double>()).epsilon(1e-12));
    CHECK(s.accuracy == e["acc_T1"].get<double>());
    auto bins = e["bins_T1"].get<std::vector<int64_t>>();
    REQUIRE(s.bins.size() == bins.size());
    for (size_t b = 0; b < bins.size(); ++b) CHECK(s.bins[b].count == bins[b]);
    // two minimisers of the same smooth function: the temperatures agree to about sqrt(tolerance)
    // of the flat minimum, the NLL at the minimum to far better
    TemperatureFit f = fit_temperature(z, y, k);
    double t = e["T"].get<double>();
    CHECK(f.temperature == doctest::Approx(t).epsilon(1e-5));
    CHECK(f.nll == doctest::Approx(e["nll_T"].get<double>()).epsilon(1e-10));
    CHECK(f.nll <= e["nll_T"].get<double>() + 1e-12);  // ours is not worse than SciPy's
    // the ECE at SciPy's T, computed by our code
    CHECK(calibration_from_logits(z, y, k, t, 15).ece == doctest::Approx(e["ece_T"].get<double>()).epsilon(1e-10));
  }
}

TEST_CASE("calibration reference: confidences exactly on numpy.linspace's bin edges") {
  LOAD_CALIBRATION_OR_SKIP(doc);
  for (const auto& e : doc["prob_cases"]) {
    INFO("case ", e["name"].get<std::string>());
    CalibrationStats s = calibration_from_probs(e["probs"].get<std::vector<double>>(), e["labels"].get<std::vector<int64_t>>(),
                                                e["classes"].get<int64_t>(), 15);
    auto bins = e["bins"].get<std::vector<int64_t>>();
    for (size_t b = 0; b < bins.size(); ++b) CHECK_MESSAGE(s.bins[b].count == bins[b], "bin " << b);
    CHECK(s.ece == doctest::Approx(e["ece"].get<double>()).epsilon(1e-12));
    CHECK(s.nll == doctest::Approx(e["nll"].get<double>()).epsilon(1e-12));
    CHECK(s.accuracy == e["acc"].get<double>());
  }
}
