// robustness: accuracy of each trained model of a results folder on corrupted test images. The
// suite (experiments/lib/corruptions.h, docs/extended-study.md): Gaussian noise, blur, contrast,
// brightness, rotation, translation and occlusion at severities 1..5, applied to the raw 28x28
// bytes before the model's own transform. Per model: accuracy on the clean images and per
// corruption and severity, the mean over corruptions per severity, and the mean over all 35
// (the "mean corruption accuracy"). Writes <results>/robustness/<model>/{robustness.json,
// robustness.csv}, <results>/robustness/samples.png (one test image under every corruption and
// severity) and robustness.png (accuracy against severity, one panel per model).
//
//   build/bin/robustness --results R [--data-dir D] [--limit N] [--estimate]
//
// --limit N: the first N official test images (all models see the same images). --estimate: time a
// small batch per model and print the expected duration, writing nothing.
#include <chrono>
#include <iostream>

#include "data/image_draw.h"
#include "data/image_io.h"
#include "experiments/lib/chart.h"
#include "experiments/lib/corruptions.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/study.h"
#include "tensor/ops.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

namespace {

const data::Color kBlack{0, 0, 0, 255};

int64_t count_correct(const Tensor& logits, const std::vector<int64_t>& labels) {
  Tensor l = logits.contiguous();
  const float* p = l.data_ptr<float>();
  const int64_t c = l.size(1);
  int64_t right = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const float* row = p + i * c;
    int64_t arg = 0;
    for (int64_t k = 1; k < c; ++k)
      if (row[k] > row[arg]) arg = k;
    right += arg == labels[i];
  }
  return right;
}

data::Image draw_samples(const Tensor& images, const std::vector<int64_t>& indices, int64_t which) {
  const auto& suite = corruption_suite();
  const int64_t scale = 3, tile = 28 * scale, pad = 8, left = 120, top = 60;
  data::Image img(left + (kSeverities + 1) * (tile + pad), top + static_cast<int64_t>(suite.size()) * (tile + pad) + 10, 3, 255);
  data::draw_text(img, 10, 10, fmt::format("Corruption suite on test image {}", indices[which]), 2, kBlack);
  for (int s = 0; s <= kSeverities; ++s)
    data::draw_text(img, left + s * (tile + pad) + 10, top - 16, s == 0 ? "clean" : fmt::format("severity {}", s), 1, kBlack);
  Tensor one = ops::slice(images, 0, which, which + 1, 1).contiguous();
  for (size_t r = 0; r < suite.size(); ++r) {
    int64_t y = top + static_cast<int64_t>(r) * (tile + pad);
    data::draw_text(img, 8, y + tile / 2 - 4, suite[r].name, 1, kBlack);
    for (int s = 0; s <= kSeverities; ++s) {
      Tensor c = corrupt_images(one, {indices[which]}, suite[r].kind, s);
      data::paste_gray(img, left + s * (tile + pad), y, c.data_ptr<uint8_t>(), 28, 28, scale);
      if (s > 0) {
        std::string p = fmt::format("{:g}", suite[r].levels[s - 1]);
        data::draw_text(img, left + s * (tile + pad) + 2, y + 2, p, 1, {255, 200, 0, 255});
      }
    }
  }
  return img;
}

data::Image draw_curves(const std::vector<nlohmann::json>& records) {
  std::vector<data::Image> panels;
  const auto& suite = corruption_suite();
  for (const auto& rec : records) {
    ChartOptions o;
    o.title = rec["display"].get<std::string>() + fmt::format(": mean corruption acc {:.3f}", rec["mean_corruption_accuracy"].get<double>());
    o.x_label = "severity (0 = clean)";
    o.y_label = "test accuracy";
    o.x_min = -0.2, o.x_max = kSeverities + 0.2, o.y_min = 0, o.y_max = 1;
    for (int s = 0; s <= kSeverities; ++s) o.x_ticks.push_back(s);
    for (int i = 0; i <= 10; i += 2) o.y_ticks.push_back(i / 10.0);
    std::vector<ChartSeries> series;
    const double clean = rec["clean_accuracy"].get<double>();
    for (size_t i = 0; i < suite.size(); ++i) {
      ChartSeries s{suite[i].name, chart_color(i), {{0, clean}}, 2};
      auto acc = rec["corruptions"][suite[i].name]["accuracy"];
      for (int k = 0; k < kSeverities; ++k) s.points.push_back({k + 1, acc[k].get<double>()});
      series.push_back(s);
    }
    ChartSeries mean{"mean over corruptions", kBlack, {{0, clean}}, 4};
    for (int k = 0; k < kSeverities; ++k) mean.points.push_back({k + 1, rec["mean_by_severity"][k].get<double>()});
    series.push_back(mean);
    panels.push_back(draw_line_chart(o, series));
  }
  return tile_images(panels, std::min<int64_t>(3, static_cast<int64_t>(panels.size())));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"robustness: accuracy of each trained model under a suite of image corruptions"};
  std::string results, data_dir, out;
  int64_t limit = 0, batch = 0;
  bool estimate = false;
  app.add_option("--results", results, "folder holding the run folders")->required();
  std::string device_name = "cpu";
  app.add_option("--device", device_name, "cpu or cuda[:N] (where the models run)");
  app.add_option("--data-dir", data_dir, "Fashion-MNIST folder");
  app.add_option("--out", out, "output folder (default: <results>/robustness)");
  app.add_option("--limit", limit, "use the first N test images (0 = all 10,000)")->check(CLI::NonNegativeNumber);
  app.add_option("--batch-size", batch, "images per forward pass (default: 256 for the CNN, 64 for ResNet18)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--estimate", estimate, "time a small batch per model, print the expected duration, write nothing");
  CLI11_PARSE(app, argc, argv);
  try {
    const Device device = parse_device(device_name);
    fs::path outdir = out.empty() ? fs::path(results) / "robustness" : fs::path(out);
    std::string dir = data::fashion_mnist_dir(data_dir.empty() ? std::nullopt : std::optional<std::string>(data_dir));
    data::ImageSet test = data::load_fashion_mnist(dir, data::FashionSplit::Test);
    const int64_t n = limit > 0 ? std::min<int64_t>(limit, test.size()) : test.size();
    Tensor images = ops::slice(test.images, 0, 0, n, 1).contiguous();
    std::vector<int64_t> indices(n), labels(n);
    Tensor lab = test.labels.to(DType::Int64).contiguous();
    for (int64_t i = 0; i < n; ++i) {
      indices[i] = i;
      labels[i] = lab.data_ptr<int64_t>()[i];
    }
    const auto& suite = corruption_suite();
    const int64_t evaluations = 1 + static_cast<int64_t>(suite.size()) * kSeverities;  // clean + 35

    if (estimate) {
      double total = 0;
      for (const auto& m : evaluated_models()) {
        fs::path run = fs::path(results) / m.key;
        if (!run_not_usable(run).empty()) continue;
        RunModel rm = load_run_model(run);
        rm.to(device);
        const int64_t bs = batch > 0 ? batch : eval_batch_size(rm), k = std::min<int64_t>(n, 2 * bs);
        double ips = measure_images_per_second(rm, ops::slice(images, 0, 0, k, 1).contiguous(), bs),
               sec = evaluations * n / ips;
        total += sec;
        std::cout << fmt::format("robustness estimate: {}: {:.0f} images/s measured on {} images -> {} x {} images ~ {:.0f} s\n",
                                 m.display, ips, k, evaluations, n, sec);
      }
      std::cout << fmt::format("robustness estimate: total ~ {:.0f} s ({:.1f} min)\n", total, total / 60);
      return 0;
    }

    check_writable(outdir);
    Logger log(outdir / "log.txt");
    log.info(fmt::format("robustness: {} test images, {} corruptions x {} severities, seed {}", n, suite.size(),
                         kSeverities, kCorruptionSeed));
    data::write_png((outdir / "samples.png").string(), draw_samples(images, indices, 0));
    std::vector<nlohmann::json> records;
    int failures = 0;
    // every record this folder will hold comes from this invocation (an interrupted one leaves none stale)
    for (const auto& m : evaluated_models()) fs::remove_all(outdir / m.key);
    for (const auto& m : evaluated_models()) {
      fs::path run = fs::path(results) / m.key;
      std::string why = run_not_usable(run);
      if (!why.empty()) {
        log.info(fmt::format("{}: {}, skipped", m.display, why));
        continue;
      }
      try {
        RunModel rm = load_run_model(run);
        rm.to(device);
        const int64_t bs = batch > 0 ? batch : eval_batch_size(rm);
        auto t_model = std::chrono::steady_clock::now();
        auto evaluate = [&](const Tensor& x, const std::string& what) {
          auto t0 = std::chrono::steady_clock::now();
          Tensor logits = run_model_logits(rm, x, bs, [&](int64_t done) {
            double el = seconds_since(t0);
            log.progress(fmt::format("  {} {}: {}/{} images  {:.0f} img/s", m.display, what, done, n, done / std::max(el, 1e-9)));
          });
          log.end_progress();
          int64_t right = count_correct(logits, labels);
          double el = seconds_since(t0);
          log.info(fmt::format("{} {}: accuracy {:.4f} ({}/{})  {:.0f} img/s", m.display, what,
                               static_cast<double>(right) / n, right, n, n / std::max(el, 1e-9)));
          return right;
        };
        int64_t clean_right = evaluate(images, "clean");
        nlohmann::json rec{{"model", m.key}, {"display", m.display}, {"run", run.string()}, {"images", n},
                           {"image_indices", fmt::format("first {} of the official test set", n)},
                           {"seed", kCorruptionSeed}, {"clean_correct", clean_right},
                           {"clean_accuracy", static_cast<double>(clean_right) / n}};
        std::string csv = "corruption,severity,parameter,correct,images,accuracy\n";
        csv += fmt::format("clean,0,,{},{},{:.6f}\n", clean_right, n, static_cast<double>(clean_right) / n);
        std::vector<double> by_sev(kSeverities, 0);
        double all = 0;
        for (const auto& c : suite) {
          nlohmann::json acc = nlohmann::json::array(), correct = nlohmann::json::array();
          for (int s = 1; s <= kSeverities; ++s) {
            Tensor x = corrupt_images(images, indices, c.kind, s);
            int64_t right = evaluate(x, fmt::format("{} severity {}", c.name, s));
            double a = static_cast<double>(right) / n;
            acc.push_back(a);
            correct.push_back(right);
            by_sev[s - 1] += a / suite.size();
            all += a / (suite.size() * kSeverities);
            csv += fmt::format("{},{},{:g},{},{},{:.6f}\n", c.name, s, c.levels[s - 1], right, n, a);
          }
          rec["corruptions"][c.name] = {{"parameter", c.parameter}, {"levels", c.levels}, {"correct", correct}, {"accuracy", acc}};
        }
        rec["mean_by_severity"] = by_sev;
        rec["mean_corruption_accuracy"] = all;
        if (clean_right) rec["relative_mean_corruption_accuracy"] = all / rec["clean_accuracy"].get<double>();
        double sec = seconds_since(t_model);
        rec["seconds"] = sec;
        rec["images_per_second"] = evaluations * n / std::max(sec, 1e-9);
        rec["evaluated"] = timestamp();
        fs::create_directories(outdir / m.key);
        write_text_atomic(outdir / m.key / "robustness.csv", csv);
        write_json(outdir / m.key / "robustness.json", rec);
        log.info(fmt::format("{}: clean {:.4f}, mean corruption accuracy {:.4f}, in {:.0f} s -> {}", m.display,
                             rec["clean_accuracy"].get<double>(), all, sec, (outdir / m.key).string()));
        records.push_back(rec);
      } catch (const std::exception& e) {
        log.end_progress();
        log.info(fmt::format("{}: could not be evaluated: {}", m.display, e.what()));
        ++failures;
        fs::create_directories(outdir / m.key);
        write_json(outdir / m.key / "failed.json", {{"model", m.key}, {"error", e.what()}});
      }
    }
    if (records.empty()) {
      log.info("no trained model found in " + results);
      fs::remove(outdir / "robustness.png");
    } else {
      data::write_png((outdir / "robustness.png").string(), draw_curves(records));
    }
    if (failures) {
      std::cerr << "robustness: " << failures << " model(s) could not be evaluated (see <model>/failed.json)\n";
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "robustness: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
