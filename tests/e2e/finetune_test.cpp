// End to end: build/bin/finetune on a few hundred images at 32x32 with a randomly initialised
// torchvision-format ResNet18 standing in for the ImageNet weights, one epoch per stage. The run
// folder is complete; the always-frozen parameters and buffers (conv1, bn1, layer1, layer2) are
// bit-identical to the weights file's while layer3, layer4 and the head changed; layer3 is still
// untouched after stage 2; the optimizer's param groups had the discriminative learning rates;
// --resume of the finished run changes nothing; without the weights it fails with the
// missing-weights message; load_run_model rebuilds the model; the report section reads the run.
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "experiments/lib/finetune_report.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/run_record.h"
#include "models/checkpoint.h"
#include "models/resnet.h"
#include "tensor/ops.h"
#include "test_util.h"

using namespace dl;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool starts_with_any(const std::string& k, std::initializer_list<const char*> prefixes) {
  for (const char* p : prefixes)
    if (k.rfind(p, 0) == 0) return true;
  return false;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  Tensor x = a.to(kCPU).contiguous(), y = b.to(kCPU).contiguous();
  if (x.sizes() != y.sizes() || x.dtype() != y.dtype()) return false;
  return std::memcmp(x.raw_data(), y.raw_data(), x.numel() * x.element_size()) == 0;
}

// keys of `prefixes` whose tensor in `dict` differs bit for bit from `ref`'s
std::vector<std::string> changed(const nn::StateDict& ref, const TensorDict& dict,
                                 std::initializer_list<const char*> prefixes) {
  std::vector<std::string> out;
  for (const auto& [k, v] : ref) {
    if (!starts_with_any(k, prefixes)) continue;
    const Tensor* t = find_tensor(dict, k);
    REQUIRE_MESSAGE(t, "checkpoint lacks " << k);
    if (!bit_identical(v, *t)) out.push_back(k);
  }
  return out;
}

std::vector<std::vector<std::string>> csv_rows(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, ',')) cells.push_back(c);
    rows.push_back(cells);
  }
  return rows;
}

}  // namespace

TEST_CASE("finetune: progressive unfreezing keeps the frozen parts, discriminative rates, resume, report") {
  fs::path weights = test::fixtures_dir() + "/resnet18_random.pth";
  REQUIRE_MESSAGE(fs::exists(weights), "stand-in weights missing: " << weights);
  const std::string prog = test::bin_dir() + "/finetune";
  fs::path out = fs::temp_directory_path() / ("dl_e2e_finetune_" + std::to_string(getpid()));
  fs::remove_all(out);
  fs::create_directories(out);
  const fs::path results = out / "results", run = results / "finetune";
  std::vector<std::string> args{prog,         "--out",          run.string(), "--weights",     weights.string(),
                                "--stand-in-weights", "--image-size", "32",   "--stage-epochs", "1,1,1",
                                "--lr",       "1e-3",           "--lr-decay", "0.3",           "--train-limit",
                                "192",        "--val-limit",    "48",         "--test-limit",  "48"};
  auto r = test::run_program(args, (out / "run.log").string());
  INFO("finetune output:\n", r.output);
  REQUIRE(r.code == 0);

  for (const char* f : {"config.json", "history.csv", "metrics.json", "confusion.csv", "predictions.csv", "best.ckpt",
                        "last.ckpt", "log.txt", "stage1/done.json", "stage2/done.json", "stage3/done.json",
                        "stage1/best.ckpt", "stage2/best.ckpt", "stage3/best.ckpt"})
    CHECK_MESSAGE(fs::exists(run / f), f << " is missing");
  auto metrics = exp::read_json(run / "metrics.json");
  CHECK(metrics["model"] == "finetune");
  CHECK(metrics["display_name"] == "ResNet18 fine-tuned (progressive unfreezing)");
  CHECK(metrics["epochs"].get<int64_t>() == 3);
  CHECK(metrics["test"]["count"].get<int64_t>() == 48);
  CHECK(csv_rows(run / "predictions.csv").size() == 49);

  // the discriminative learning rates: in config.json, history.csv and the optimizer's saved groups
  const std::vector<double> lrs{1e-3, 3e-4, 9e-5};
  auto config = exp::read_json(run / "config.json");
  REQUIRE(config["stages"].size() == 3);
  for (size_t s = 0; s < 3; ++s) {
    const auto& groups = config["stages"][s]["param_groups"];
    REQUIRE(groups.size() == s + 1);
    for (size_t g = 0; g <= s; ++g) CHECK(groups[g]["lr"].get<double>() == doctest::Approx(lrs[g]).epsilon(1e-12));
    Checkpoint last = load_checkpoint((run / fmt::format("stage{}", s + 1) / "last.ckpt").string());
    const auto& saved = last.meta["optimizer"]["param_groups"];
    REQUIRE(saved.size() == s + 1);
    for (size_t g = 0; g <= s; ++g) CHECK(saved[g]["lr"].get<double>() == doctest::Approx(lrs[g]).epsilon(1e-12));
  }
  auto hist = csv_rows(run / "history.csv");
  REQUIRE(hist.size() == 4);
  CHECK(hist[0] == std::vector<std::string>{"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                                            "stage", "stage_epoch", "lr_layer4", "lr_layer3"});
  for (size_t s = 1; s <= 3; ++s) {
    CHECK(hist[s][0] == std::to_string(s));
    CHECK(hist[s][7] == std::to_string(s));
    CHECK(std::stod(hist[s][5]) == doctest::Approx(1e-3));
    CHECK(std::stod(hist[s][9]) == doctest::Approx(s >= 2 ? 3e-4 : 0.0));
    CHECK(std::stod(hist[s][10]) == doctest::Approx(s >= 3 ? 9e-5 : 0.0));
  }

  // frozen parameters and batch-norm statistics untouched; the trained parts changed
  manual_seed(42);  // the program's seed: the same new head before training
  models::ResNet18 ref(10);
  models::load_resnet18_weights(ref, weights.string());
  nn::StateDict initial = ref.state_dict();
  Checkpoint best = load_checkpoint((run / "best.ckpt").string());
  auto frozen_changed = changed(initial, best.model, {"conv1.", "bn1.", "layer1.", "layer2."});
  CHECK_MESSAGE(frozen_changed.empty(), "frozen tensors changed: " << fmt::format("{}", fmt::join(frozen_changed, ", ")));
  for (const char* k : {"layer3.0.conv1.weight", "layer3.1.bn2.running_mean", "layer4.0.conv1.weight",
                        "layer4.1.bn2.weight", "layer4.1.bn2.running_var", "fc.weight", "fc.bias"})
    CHECK_MESSAGE(!changed(initial, best.model, {k}).empty(), k << " did not change");
  Checkpoint stage2 = load_checkpoint((run / "stage2" / "best.ckpt").string());
  auto layer3_in_stage2 = changed(initial, stage2.model, {"layer3."});
  CHECK_MESSAGE(layer3_in_stage2.empty(), "layer3 changed in stage 2: " << fmt::format("{}", fmt::join(layer3_in_stage2, ", ")));
  CHECK(!changed(initial, stage2.model, {"layer4.0.conv1.weight"}).empty());

  // --resume of the finished run: nothing trained, nothing rewritten
  std::map<std::string, std::string> before;
  for (const char* f : {"config.json", "history.csv", "metrics.json", "predictions.csv", "best.ckpt",
                        "stage3/last.ckpt", "stage3/done.json"})
    before[f] = slurp(run / f);
  auto mtime = fs::last_write_time(run / "best.ckpt");
  auto args_resume = args;
  args_resume.push_back("--resume");
  auto rr = test::run_program(args_resume, (out / "resume.log").string());
  INFO("resume output:\n", rr.output);
  CHECK(rr.code == 0);
  CHECK(rr.output.find("nothing to do") != std::string::npos);
  CHECK(rr.output.find("epoch 1/1") == std::string::npos);
  for (const auto& [f, text] : before) CHECK_MESSAGE(slurp(run / f) == text, f << " changed on --resume");
  CHECK(fs::last_write_time(run / "best.ckpt") == mtime);

  // the model rebuilt for the analysis programs
  exp::RunModel rm = exp::load_run_model(run);
  CHECK(rm.key == "finetune");
  CHECK(rm.input_shape == Shape{3, 32, 32});
  CHECK(changed(rm.model->state_dict(), best.model, {"layer4.", "fc."}).empty());

  // the report section, with and without a baseline
  auto sec = exp::finetune_section(results, results / "report");
  CHECK(sec.markdown.find("## Fine-tuning beyond the frozen head") != std::string::npos);
  CHECK(sec.markdown.find("ResNet18 fine-tuned (progressive unfreezing)") != std::string::npos);
  CHECK(sec.markdown.find(fmt::format("{:.4f}", metrics["test"]["accuracy"].get<double>())) != std::string::npos);
  CHECK(sec.markdown.find("fc 0.001, layer4 0.0003, layer3 9e-05") != std::string::npos);
  CHECK(sec.markdown.find("stand-in") != std::string::npos);
  CHECK(sec.markdown.find("| Baseline ResNet18 (frozen backbone) | not run |") != std::string::npos);
  REQUIRE(!sec.conclusions.empty());
  CHECK(sec.conclusions[0].find("no comparison") != std::string::npos);
  // a baseline: the comparison's sign follows the numbers
  fs::create_directories(results / "baseline_transfer");
  nlohmann::json base = metrics;
  base["display_name"] = "Baseline ResNet18";
  base["test"]["accuracy"] = metrics["test"]["accuracy"].get<double>() - 0.05;
  exp::write_json(results / "baseline_transfer" / "metrics.json", base);
  sec = exp::finetune_section(results, results / "report");
  CHECK(sec.markdown.find("| Baseline ResNet18 (frozen backbone) |") != std::string::npos);
  REQUIRE(!sec.conclusions.empty());
  CHECK(sec.conclusions[0].find("beat") != std::string::npos);
  CHECK(sec.conclusions[0].find("+5.00 points") != std::string::npos);

  // not run: the reason study.sh recorded
  const fs::path other = out / "other";
  CHECK(exp::finetune_section(other, other).markdown.empty());  // never part of this study
  fs::create_directories(other / "finetune");
  std::ofstream(other / "finetune" / "not_run.txt") << "skipped by study.sh: no GPU\n";
  sec = exp::finetune_section(other, other / "report");
  CHECK(sec.markdown.find("not run: skipped by study.sh: no GPU") != std::string::npos);

  // without the weights: the missing-weights message, nothing written
  auto args_missing = args;
  args_missing[2] = (out / "nowt").string();
  args_missing[4] = (out / "absent.pth").string();
  auto rm2 = test::run_program(args_missing, (out / "missing.log").string());
  CHECK(rm2.code == 1);
  CHECK(rm2.output.find("finetune: error: the ImageNet weights for ResNet18 are not at") != std::string::npos);
  CHECK(!fs::exists(out / "nowt"));
  exp::write_json(other / "finetune" / "failed.json",
                  {{"step", "finetune"}, {"exit_status", 1}, {"stderr_tail", {rm2.output}}, {"log_tail", nlohmann::json::array()}});
  sec = exp::finetune_section(other, other / "report");
  CHECK(sec.markdown.find("not run: the ResNet18 weights are missing") != std::string::npos);
  exp::write_json(other / "finetune" / "failed.json", {{"step", "finetune"}, {"exit_status", 137}});
  sec = exp::finetune_section(other, other / "report");
  CHECK(sec.markdown.find("step failed (exit 137)") != std::string::npos);

  fs::remove_all(out);
}
