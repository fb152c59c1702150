// The eda program end to end: on a small synthetic data set (always) and on the real
// Fashion-MNIST (when installed), it writes the run folder with the expected numbers and files.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data/fashion_mnist.h"
#include "data/file_util.h"
#include "data/idx.h"
#include "data/image_io.h"
#include "data/split.h"
#include "data_test_util.h"
#include "test_util.h"

using namespace dl;
using namespace dl::data;
namespace fs = std::filesystem;

namespace {

std::string eda_binary() {
  if (const char* d = std::getenv("DL_BIN_DIR"); d && *d) return (fs::path(d) / "eda").string();
  return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "bin" / "eda").string();
}

struct RunResult {
  int code;
  std::string output;
};

RunResult run_eda(const std::string& args, const test::TempDir& dir) {
  const std::string bin = eda_binary();
  REQUIRE_MESSAGE(fs::exists(bin), "eda binary not found at " << bin << " (build the eda target)");
  const std::string log = dir.file("eda.log");
  int status = std::system((bin + " " + args + " > " + log + " 2>&1").c_str());
  std::string out = fs::exists(log) ? read_file(log) : "";
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_file(p.string())); }

void check_outputs(const fs::path& run) {
  for (const char* f : {"summary.json", "config.json", "class_counts.csv", "samples.png", "class_means.png"}) {
    CAPTURE(f);
    CHECK(fs::exists(run / f));
  }
  for (auto& e : fs::directory_iterator(run)) CHECK(e.path().string().find(".tmp") == std::string::npos);
  Image samples = read_image((run / "samples.png").string());
  Image means = read_image((run / "class_means.png").string());
  CHECK(samples.width > 10 * 28);
  CHECK(samples.height > 10 * 28);
  CHECK(means.width > 5 * 28);
}

}  // namespace

TEST_CASE("eda on a synthetic data set writes the counts, statistics, split and figures") {
  test::TempDir dir;
  // 200 training images (20 per class) and 50 test images; pixel value = (i * 13) % 256
  auto write_split = [&](const std::string& stem, int64_t n) {
    std::vector<uint8_t> px(static_cast<size_t>(n * 28 * 28)), lab(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      lab[static_cast<size_t>(i)] = static_cast<uint8_t>(i % 10);
      for (int64_t p = 0; p < 784; ++p) px[static_cast<size_t>(i * 784 + p)] = static_cast<uint8_t>((i * 13 + p) % 256);
    }
    write_idx(dir.file(stem + "-images-idx3-ubyte.gz"), IdxType::UInt8, {n, 28, 28}, px, true);
    write_idx(dir.file(stem + "-labels-idx1-ubyte.gz"), IdxType::UInt8, {n}, lab, true);
  };
  write_split("train", 200);
  write_split("t10k", 50);
  const fs::path run = dir.path / "run";
  RunResult r = run_eda("--data-dir " + dir.path.string() + " --out " + run.string() + " --val-fraction 0.2 --seed 7", dir);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(r.output.find("T-shirt/top") != std::string::npos);
  check_outputs(run);
  nlohmann::json s = read_json(run / "summary.json");
  CHECK(s["counts"]["train"]["per_class"] == std::vector<int64_t>(10, 16));
  CHECK(s["counts"]["val"]["per_class"] == std::vector<int64_t>(10, 4));
  CHECK(s["counts"]["test"]["per_class"] == std::vector<int64_t>(10, 5));
  CHECK(s["class_names"][9] == "Ankle boot");
  // the split is the one the library computes for these labels
  ImageSet train = load_fashion_mnist(dir.path.string(), FashionSplit::Train);
  Split split = stratified_split(train.labels, 10, 0.2, 7);
  CHECK(SplitIdentity::from_json(s["split"]) == split.identity);
  // the train split's pixel mean, recomputed here
  double sum = 0;
  const uint8_t* px = train.images.data_ptr<uint8_t>();
  for (int64_t i : split.train)
    for (int64_t p = 0; p < 784; ++p) sum += px[i * 784 + p] / 255.0;
  const double mean = sum / (static_cast<double>(split.train.size()) * 784);
  CHECK(s["normalization"]["mean"].get<double>() == doctest::Approx(mean).epsilon(1e-12));
  CHECK(s["files"].size() == 4);
  CHECK(s["files"][0]["sha256"].get<std::string>().size() == 64);
  nlohmann::json c = read_json(run / "config.json");
  CHECK(c["seed"] == 7);
}

TEST_CASE("eda reports a missing data set and bad options clearly") {
  test::TempDir dir;
  RunResult r = run_eda("--data-dir " + dir.file("nowhere") + " --out " + dir.file("run"), dir);
  CHECK(r.code != 0);
  CHECK(r.output.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  CHECK(r.output.find("--data-dir") != std::string::npos);
  r = run_eda("--val-fraction 1.5 --out " + dir.file("run2"), dir);
  CHECK(r.code != 0);
  CHECK(r.output.find("--val-fraction") != std::string::npos);
}

TEST_CASE("eda on the real Fashion-MNIST (when installed)") {
  const std::string data = fashion_mnist_dir();
  DL_SKIP_WITHOUT_FASHION_MNIST(data, "train-images-idx3-ubyte");
  test::TempDir dir;
  const fs::path run = dir.path / "run";
  RunResult r = run_eda("--data-dir " + data + " --out " + run.string(), dir);
  INFO(r.output);
  REQUIRE(r.code == 0);
  check_outputs(run);
  nlohmann::json s = read_json(run / "summary.json");
  CHECK(s["counts"]["train"]["per_class"] == std::vector<int64_t>(10, 5400));
  CHECK(s["counts"]["val"]["per_class"] == std::vector<int64_t>(10, 600));
  CHECK(s["counts"]["test"]["per_class"] == std::vector<int64_t>(10, 1000));
  CHECK(s["split"]["seed"] == 42);
  // the well-known Fashion-MNIST statistics (0.2860, 0.3530 over the 60,000 training images)
  CHECK(s["pixel_stats"]["train_full"]["mean"].get<double>() == doctest::Approx(0.2860).epsilon(2e-4 / 0.286));
  CHECK(s["pixel_stats"]["train_full"]["std"].get<double>() == doctest::Approx(0.3530).epsilon(2e-4 / 0.353));
  CHECK(s["normalization"]["mean"].get<double>() == doctest::Approx(0.2860).epsilon(0.003));
}
