// calibration: how well each trained model's probabilities match its accuracy, before and after
// temperature scaling. Per model of a results folder:
//   - ECE (15 equal-width confidence bins) and NLL on the test images, from the probabilities the
//     run recorded in predictions.csv (no model evaluation);
//   - the model's logits on its validation and test images (the run's split and subsets, rebuilt
//     from config.json and checked against it; the ResNet18 runs' features come from the feature
//     cache when it is there, else the whole network runs), checked against predictions.csv;
//   - a temperature T fitted on the VALIDATION split by minimising its NLL (golden-section search
//     on log T, experiments/lib/calibration.h), then ECE and NLL on test at T = 1 and at T.
// Writes <results>/calibration/<model>/{calibration.json, reliability.png}.
//
//   build/bin/calibration --results R [--data-dir D] [--estimate]
#include <chrono>
#include <cmath>
#include <iostream>

#include "autograd/node.h"
#include "data/image_draw.h"
#include "data/image_io.h"
#include "experiments/lib/calibration.h"
#include "experiments/lib/chart.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/study.h"
#include "experiments/lib/transfer.h"
#include "models/io/sha256.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "tensor/ops.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

namespace {

const data::Color kBlack{0, 0, 0, 255}, kBar{70, 120, 200, 255}, kGap{230, 90, 80, 255};
constexpr int64_t kBins = 15;
constexpr double kTMin = 0.05, kTMax = 20.0, kTol = 1e-7;

// The ResNet18 run's cached validation and test features, when the cache for exactly this run's
// weights, image size and data is there; nullopt otherwise.
std::optional<std::pair<Tensor, Tensor>> cached_features(const fs::path& run, const StudyData& d, std::string& file_out) {
  nlohmann::json config = read_json(run / "config.json"), metrics = read_json(run / "metrics.json");
  std::string recorded = metrics.value("feature_cache", std::string());
  if (recorded.empty()) return std::nullopt;
  std::string weights = config.at("weights").get<std::string>();
  std::string sha = config.value("weights_sha256", std::string());
  if (sha.empty()) sha = io::sha256_file(weights);
  auto [file, key] = feature_cache_file(fs::path(recorded).parent_path(), sha, config.at("image_size").get<int64_t>(), d,
                                   config.value("precision", std::string("fp32")));
  if (!fs::exists(file)) return std::nullopt;
  std::map<std::string, std::string> md;
  TensorDict c = load_safetensors(file.string(), &md, false);
  if (md["key"] != key) return std::nullopt;
  const Tensor *val = find_tensor(c, "val"), *test = find_tensor(c, "test");
  if (!val || !test) return std::nullopt;
  file_out = file.string();
  return std::make_pair(*val, *test);
}

data::Image draw_reliability(const CalibrationStats& s, const std::string& title) {
  ChartOptions o;
  o.title = title;
  o.x_label = "confidence (largest probability)";
  o.y_label = "accuracy in the bin";
  o.width = 480, o.height = 440;
  for (int i = 0; i <= 10; i += 2) {
    o.x_ticks.push_back(i / 10.0);
    o.y_ticks.push_back(i / 10.0);
  }
  data::Image img(o.width, o.height, 3, 255);
  ChartFrame f = draw_chart_frame(img, o);
  for (const auto& b : s.bins) {
    if (!b.count) continue;
    int64_t x0 = std::lround(f.px(b.low)) + 1, x1 = std::lround(f.px(b.high)) - 1;
    int64_t ya = std::lround(f.py(b.accuracy)), yc = std::lround(f.py(b.confidence));
    data::fill_rect(img, x0, ya, x1 - x0, f.bottom - ya, kBar);
    // the gap to the bin's mean confidence, hatched in red
    for (int64_t y = std::min(ya, yc); y < std::max(ya, yc); y += 2) data::fill_rect(img, x0, y, x1 - x0, 1, kGap);
  }
  draw_line(img, f.px(0), f.py(0), f.px(1), f.py(1), {120, 120, 120, 255}, 1);
  data::draw_text(img, f.left + 8, f.top + 6, fmt::format("ECE {:.4f}   NLL {:.4f}", s.ece, s.nll), 1, kBlack);
  data::draw_text(img, f.left + 8, f.top + 20, fmt::format("accuracy {:.4f}  mean conf. {:.4f}", s.accuracy, s.mean_confidence), 1, kBlack);
  data::fill_rect(img, f.left + 8, f.top + 36, 12, 8, kBar);
  data::draw_text(img, f.left + 24, f.top + 36, "accuracy", 1, kBlack);
  data::fill_rect(img, f.left + 90, f.top + 36, 12, 8, kGap);
  data::draw_text(img, f.left + 106, f.top + 36, "gap to confidence", 1, kBlack);
  return img;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"calibration: ECE, NLL, reliability diagrams and temperature scaling for each trained model"};
  std::string results, data_dir, out;
  bool estimate = false;
  app.add_option("--results", results, "folder holding the run folders")->required();
  std::string device_name = "cpu";
  app.add_option("--device", device_name, "cpu or cuda[:N] (where the models run)");
  app.add_option("--data-dir", data_dir, "Fashion-MNIST folder (default: the one each run recorded)");
  app.add_option("--out", out, "output folder (default: <results>/calibration)");
  app.add_flag("--estimate", estimate, "say what would be evaluated and time a small batch, write nothing");
  CLI11_PARSE(app, argc, argv);
  try {
    const Device device = parse_device(device_name);
    fs::path outdir = out.empty() ? fs::path(results) / "calibration" : fs::path(out);
    std::unique_ptr<Logger> log;
    if (!estimate) {
      check_writable(outdir);
      log = std::make_unique<Logger>(outdir / "log.txt");
      // every record this folder will hold comes from this invocation (an interrupted one leaves none stale)
      for (const auto& m : evaluated_models()) fs::remove_all(outdir / m.key);
    }
    auto info = [&](const std::string& s) {
      if (log) log->info(s);
      else std::cout << s << "\n";
    };
    double total_estimate = 0;
    int done = 0, failures = 0;
    for (const auto& m : evaluated_models()) {
      fs::path run = fs::path(results) / m.key;
      std::string why = run_not_usable(run);
      if (!why.empty()) {
        info(fmt::format("{}: {}, skipped", m.display, why));
        continue;
      }
      try {
        auto t0 = std::chrono::steady_clock::now();
        // 1. what the run recorded
        auto preds = read_predictions(run / "predictions.csv");
        if (preds.empty()) fail("{}: no predictions", (run / "predictions.csv").string());
        const int64_t classes = static_cast<int64_t>(preds[0].probs.size());
        std::vector<double> rec_probs;
        std::vector<int64_t> rec_labels, rec_idx;
        for (const auto& p : preds) {
          if (static_cast<int64_t>(p.probs.size()) != classes) fail("{}: rows of different widths", (run / "predictions.csv").string());
          rec_probs.insert(rec_probs.end(), p.probs.begin(), p.probs.end());
          rec_labels.push_back(p.label);
          rec_idx.push_back(p.index);
        }
        CalibrationStats recorded = calibration_from_probs(rec_probs, rec_labels, classes, kBins);

        // 2. logits on the run's validation and test images
        StudyData d = run_study_data(run, data_dir);
        if (d.test_idx != rec_idx)
          fail("{}: its predictions.csv covers other test images than the data rebuilt from config.json", run.string());
        RunModel rm = load_run_model(run);
        rm.to(device);
        std::string source, cache_file;
        std::optional<std::pair<Tensor, Tensor>> feats;
        if (rm.key != "scratch_cnn") feats = cached_features(run, d, cache_file);
        if (estimate) {
          if (feats) {
            std::cout << fmt::format("calibration estimate: {}: features cached ({}), a few seconds\n", m.display, cache_file);
            continue;
          }
          const int64_t bs = eval_batch_size(rm);
          Tensor few = select_rows(d.train_set.images, std::vector<int64_t>(d.val_idx.begin(), d.val_idx.begin() + std::min<size_t>(2 * bs, d.val_idx.size())));
          double ips = measure_images_per_second(rm, few, bs);
          double sec = (d.val_idx.size() + d.test_idx.size()) / ips;
          total_estimate += sec;
          std::cout << fmt::format("calibration estimate: {}: {:.0f} images/s measured on {} images -> {} images ~ {:.0f} s\n",
                                   m.display, ips, few.size(0), d.val_idx.size() + d.test_idx.size(), sec);
          continue;
        }
        Tensor val_logits, test_logits;
        if (feats) {
          auto* net = dynamic_cast<models::ResNet18*>(rm.model.get());
          if (!net) fail("{}: the model is not a ResNet18", run.string());
          NoGradGuard ng;
          val_logits = ops::to_device(net->head(ops::to_device(feats->first, device)).detach(), kCPU).contiguous();
          test_logits = ops::to_device(net->head(ops::to_device(feats->second, device)).detach(), kCPU).contiguous();
          source = "the run's feature cache " + cache_file + " through its trained head";
        } else {
          for (auto [set, idx, what, dst] : {std::tuple{&d.train_set, &d.val_idx, "validation", &val_logits},
                                             std::tuple{&d.test_set, &d.test_idx, "test", &test_logits}}) {
            auto t1 = std::chrono::steady_clock::now();
            const int64_t n = static_cast<int64_t>(idx->size());
            *dst = run_model_logits(rm, select_rows(set->images, *idx), eval_batch_size(rm), [&](int64_t k) {
              log->progress(fmt::format("  {} {} logits: {}/{} images  {:.0f} img/s", m.display, what, k, n,
                                        k / std::max(seconds_since(t1), 1e-9)));
            });
            log->end_progress();
          }
          source = "the whole model run on the images";
        }
        std::vector<double> zv = logits_as_doubles(val_logits), zt = logits_as_doubles(test_logits);
        std::vector<int64_t> yv = labels_of(d.train_set, d.val_idx), yt = labels_of(d.test_set, d.test_idx);
        if (val_logits.size(1) != classes) fail("{}: the model has {} outputs, predictions.csv {} classes", run.string(), val_logits.size(1), classes);

        // the recomputed test probabilities against the recorded ones
        std::vector<double> pt = softmax_rows(zt, classes);
        const std::vector<int64_t> recomputed = argmax_rows(pt, classes);
        int64_t disagree = 0;
        double max_diff = 0;
        for (size_t i = 0; i < preds.size(); ++i) {
          disagree += recomputed[i] != preds[i].prediction;
          for (int64_t c = 0; c < classes; ++c) max_diff = std::max(max_diff, std::abs(pt[i * classes + c] - preds[i].probs[c]));
        }
        if (disagree) info(fmt::format("{}: warning: {} of {} recomputed test predictions differ from predictions.csv", m.display, disagree, preds.size()));

        // 3. temperature scaling fitted on validation
        TemperatureFit fit = fit_temperature(zv, yv, classes, kTMin, kTMax, kTol);
        CalibrationStats val_before = calibration_from_logits(zv, yv, classes, 1.0, kBins),
                         val_after = calibration_from_logits(zv, yv, classes, fit.temperature, kBins),
                         test_before = calibration_from_logits(zt, yt, classes, 1.0, kBins),
                         test_after = calibration_from_logits(zt, yt, classes, fit.temperature, kBins);
        nlohmann::json j{
            {"model", m.key}, {"display", m.display}, {"run", run.string()}, {"bins", kBins},
            {"ece_definition", "15 equal-width bins (low, high] of the largest probability; sum of count/N * |accuracy - mean confidence|"},
            {"recorded", recorded.to_json()},
            {"logits_from", source},
            {"check_against_predictions_csv", {{"test_images", preds.size()}, {"predictions_differing", disagree},
                                               {"max_abs_probability_difference", max_diff}}},
            {"temperature", {{"value", fit.temperature}, {"fitted_on", "validation"}, {"validation_images", yv.size()},
                             {"method", fmt::format("golden-section search on log T over [{:g}, {:g}], bracket < {:g}", kTMin, kTMax, kTol)},
                             {"evaluations", fit.evaluations}, {"at_bound", fit.at_bound},
                             {"validation_nll_at_1", fit.nll_at_1}, {"validation_nll_at_T", fit.nll}}},
            {"validation", {{"before", val_before.to_json()}, {"after", val_after.to_json()}}},
            {"test", {{"before", test_before.to_json()}, {"after", test_after.to_json()}}},
            {"seconds", seconds_since(t0)}, {"evaluated", timestamp()}};
        fs::create_directories(outdir / m.key);
        write_json(outdir / m.key / "calibration.json", j);
        data::write_png((outdir / m.key / "reliability.png").string(),
                        tile_images({draw_reliability(test_before, m.display + ": test, T = 1"),
                                     draw_reliability(test_after, fmt::format("{}: test, T = {:.3f}", m.display, fit.temperature))},
                                    2));
        info(fmt::format("{}: T = {:.4f} (validation NLL {:.4f} -> {:.4f}); test ECE {:.4f} -> {:.4f}, NLL {:.4f} -> {:.4f}"
                         " (recorded probabilities: ECE {:.4f}, NLL {:.4f}); logits from {}",
                         m.display, fit.temperature, fit.nll_at_1, fit.nll, test_before.ece, test_after.ece, test_before.nll,
                         test_after.nll, recorded.ece, recorded.nll, source));
        ++done;
      } catch (const std::exception& e) {
        if (log) log->end_progress();
        info(fmt::format("{}: could not be evaluated: {}", m.display, e.what()));
        ++failures;
        if (!estimate) {
          fs::create_directories(outdir / m.key);
          write_json(outdir / m.key / "failed.json", {{"model", m.key}, {"error", e.what()}});
        }
      }
    }
    if (estimate) std::cout << fmt::format("calibration estimate: total ~ {:.0f} s\n", total_estimate);
    else if (done == 0 && failures == 0) info("no trained model found in " + results);
    if (failures) {
      std::cerr << "calibration: " << failures << " model(s) could not be evaluated\n";
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "calibration: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
