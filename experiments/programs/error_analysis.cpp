// error_analysis: for each trained model of a results folder, the confusion matrix (counts and
// row-normalised), the most confused class pairs, a grid of misclassified test images with true
// and predicted labels, and Grad-CAM heat maps (ResNet18 on layer4, the scratch CNN on its last
// conv block) over sample test images. Reads the run folders and the test images; writes
// <results>/error_analysis/<model>/{confusion.png, confusion_normalized.csv, confused_pairs.csv,
// misclassified.png, gradcam.png, summary.json}.
//
//   build/bin/error_analysis --results results/<date-time> [--data-dir D] [--samples 8]
#include <algorithm>
#include <iostream>

#include "autograd/node.h"
#include "data/image_draw.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/study.h"
#include "experiments/lib/transfer.h"
#include "models/checkpoint.h"
#include "models/io/sha256.h"
#include "models/scratch_cnn.h"
#include "tensor/ops.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

namespace {

const data::Color kBlack{0, 0, 0, 255}, kWhite{255, 255, 255, 255}, kRed{200, 30, 30, 255}, kGreen{20, 130, 40, 255};

std::string short_name(const std::string& n) { return n == "T-shirt/top" ? "T-shirt" : n == "Ankle boot" ? "Boot" : n; }

// A white-to-blue confusion image: colour = row-normalised rate, text = count.
data::Image draw_confusion(const std::vector<std::vector<int64_t>>& conf, const std::vector<std::string>& names,
                           const std::string& title) {
  const int64_t cell = 46, left = 90, top = 60, n = static_cast<int64_t>(conf.size());
  data::Image img(left + n * cell + 20, top + n * cell + 90, 3, 255);
  data::draw_text(img, 10, 10, title, 2, kBlack);
  data::draw_text(img, left, top - 16, "predicted ->", 1, kBlack);
  for (int64_t t = 0; t < n; ++t) {
    int64_t row = 0;
    for (int64_t v : conf[t]) row += v;
    data::draw_text(img, 6, top + t * cell + cell / 2 - 4, short_name(names[t]), 1, kBlack);
    for (int64_t p = 0; p < n; ++p) {
      double r = row ? static_cast<double>(conf[t][p]) / static_cast<double>(row) : 0.0;
      data::Color c{static_cast<uint8_t>(255 - 215 * r), static_cast<uint8_t>(255 - 160 * r), 255, 255};
      data::fill_rect(img, left + p * cell + 1, top + t * cell + 1, cell - 2, cell - 2, c);
      std::string s = std::to_string(conf[t][p]);
      data::draw_text(img, left + p * cell + (cell - data::text_width(s, 1)) / 2, top + t * cell + cell / 2 - 4, s, 1,
                      r > 0.5 ? kWhite : kBlack);
    }
  }
  for (int64_t p = 0; p < n; ++p) {
    std::string s = short_name(names[p]);
    data::draw_text(img, left + p * cell + 2, top + n * cell + 6 + (p % 2) * 12, s, 1, kBlack);
  }
  data::draw_text(img, 10, top + n * cell + 40, "rows: true class; colour: share of the row", 1, kBlack);
  return img;
}

// A grid of test images with "true / predicted" captions.
data::Image draw_misclassified(const data::ImageSet& test, const std::vector<Prediction>& wrong,
                               const std::vector<std::string>& names, const std::string& title) {
  const int64_t cols = 8, scale = 3, tile = 28 * scale, cap = 28, pad = 6;
  int64_t rows = std::max<int64_t>(1, (static_cast<int64_t>(wrong.size()) + cols - 1) / cols);
  data::Image img(cols * (tile + pad) + pad, 40 + rows * (tile + cap + pad), 3, 255);
  data::draw_text(img, pad, 10, title, 2, kBlack);
  const uint8_t* px = test.images.data_ptr<uint8_t>();
  for (size_t i = 0; i < wrong.size(); ++i) {
    int64_t r = static_cast<int64_t>(i) / cols, c = static_cast<int64_t>(i) % cols;
    int64_t x = pad + c * (tile + pad), y = 40 + r * (tile + cap + pad);
    data::paste_gray(img, x, y, px + wrong[i].index * 784, 28, 28, scale);
    data::draw_text(img, x, y + tile + 3, "T: " + short_name(names[wrong[i].label]), 1, kGreen);
    data::draw_text(img, x, y + tile + 14, "P: " + short_name(names[wrong[i].prediction]), 1, kRed);
  }
  if (wrong.empty()) data::draw_text(img, pad, 50, "no misclassified test images", 1, kBlack);
  return img;
}

// Jet-like colour map for a value in [0, 1].
data::Color heat(double v) {
  v = std::clamp(v, 0.0, 1.0);
  double r = std::clamp(1.5 - std::abs(4 * v - 3), 0.0, 1.0), g = std::clamp(1.5 - std::abs(4 * v - 2), 0.0, 1.0),
         b = std::clamp(1.5 - std::abs(4 * v - 1), 0.0, 1.0);
  return {static_cast<uint8_t>(255 * r), static_cast<uint8_t>(255 * g), static_cast<uint8_t>(255 * b), 255};
}

// Grad-CAM for class `cls` of each image: relu(sum_c mean_hw(dScore/dA_c) * A_c), upsampled to
// 28x28 (bilinear) and scaled to [0, 1] per image.
Tensor grad_cam(models::Classifier& model, const Tensor& input, const std::vector<int64_t>& cls) {
  model.eval();
  model.requires_grad_(false);
  Tensor act = model.forward_to_cam_layer(input).detach().requires_grad_();
  Tensor logits = model.forward_from_cam_layer(act);
  Tensor onehot = zeros(logits.sizes());
  for (size_t i = 0; i < cls.size(); ++i) onehot.at<float>({static_cast<int64_t>(i), cls[i]});
  {
    auto* p = onehot.data_ptr<float>();
    for (size_t i = 0; i < cls.size(); ++i) p[i * logits.size(1) + cls[i]] = 1.0f;
  }
  (logits * onehot).sum().backward();
  NoGradGuard ng;
  Tensor g = act.grad();                                  // (N, C, h, w)
  Tensor w = g.mean({2, 3}, true);                        // (N, C, 1, 1)
  Tensor cam = (act.detach() * w).sum({1}, true).relu();  // (N, 1, h, w)
  cam = data::resize_bilinear(cam, 28, 28);
  Tensor mx = cam.max(3, true).max(2, true);
  return (cam / (mx + 1e-12)).squeeze(1);  // (N, 28, 28)
}

data::Image draw_gradcam(const data::ImageSet& test, const std::vector<Prediction>& samples, const Tensor& cams,
                         const std::vector<std::string>& names, const std::string& title) {
  const int64_t scale = 4, tile = 28 * scale, pad = 8, cap = 30;
  int64_t n = static_cast<int64_t>(samples.size());
  data::Image img(pad + n * (tile + pad), 40 + 2 * tile + cap + 2 * pad, 3, 255);
  data::draw_text(img, pad, 10, title, 2, kBlack);
  const uint8_t* px = test.images.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    int64_t x = pad + i * (tile + pad), y = 40;
    const uint8_t* im = px + samples[i].index * 784;
    data::paste_gray(img, x, y, im, 28, 28, scale);
    for (int64_t yy = 0; yy < tile; ++yy)
      for (int64_t xx = 0; xx < tile; ++xx) {
        double v = cams.at<float>({i, yy / scale, xx / scale});
        double gray = im[(yy / scale) * 28 + xx / scale] / 255.0;
        data::Color h = heat(v);
        for (int c = 0; c < 3; ++c)
          img.at(y + tile + pad + yy, x + xx, c) = static_cast<uint8_t>(0.55 * h[c] + 0.45 * 255 * gray);
      }
    bool ok = samples[i].label == samples[i].prediction;
    data::draw_text(img, x, y + 2 * tile + pad + 4, "T: " + short_name(names[samples[i].label]), 1, kGreen);
    data::draw_text(img, x, y + 2 * tile + pad + 16, "P: " + short_name(names[samples[i].prediction]), 1, ok ? kGreen : kRed);
  }
  return img;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"error_analysis: confusion, confused pairs, misclassified images and Grad-CAM for each trained model"};
  std::string results, data_dir, out;
  int64_t samples = 8;
  app.add_option("--results", results, "folder holding the run folders")->required();
  app.add_option("--data-dir", data_dir, "Fashion-MNIST folder");
  app.add_option("--out", out, "output folder (default: <results>/error_analysis)");
  app.add_option("--samples", samples, "images in each Grad-CAM figure")->check(CLI::Range(1, 16));
  CLI11_PARSE(app, argc, argv);
  try {
    fs::path outdir = out.empty() ? fs::path(results) / "error_analysis" : fs::path(out);
    check_writable(outdir);
    std::string dir = data::fashion_mnist_dir(data_dir.empty() ? std::nullopt : std::optional<std::string>(data_dir));
    data::ImageSet test = data::load_fashion_mnist(dir, data::FashionSplit::Test);
    auto names = class_names();
    int done = 0;
    for (const auto& [key, display] : std::vector<std::pair<std::string, std::string>>{
             {"baseline_transfer", "Baseline ResNet18"}, {"lr_tuning", "Tuned ResNet18"}, {"scratch_cnn", "Scratch CNN"}}) {
      fs::path run = fs::path(results) / key;
      if (!fs::exists(run / "metrics.json")) {
        std::cout << display << ": not run, skipped\n";
        continue;
      }
      if (fs::exists(run / "failed.json")) {  // written by study.sh: whatever the folder holds is not a finished run
        std::cout << display << ": its step failed (see " << (run / "failed.json").string() << "), skipped\n";
        continue;
      }
      fs::path o = outdir / key;
      fs::create_directories(o);
      auto conf = read_confusion(run / "confusion.csv");
      auto preds = read_predictions(run / "predictions.csv");
      data::write_png((o / "confusion.png").string(), draw_confusion(conf, names, display + ": confusion matrix"));
      std::string norm = "true\\predicted";
      for (const auto& n : names) norm += "," + n;
      norm += "\n";
      for (size_t t = 0; t < conf.size(); ++t) {
        int64_t row = 0;
        for (int64_t v : conf[t]) row += v;
        norm += names[t];
        for (int64_t v : conf[t]) norm += fmt::format(",{:.4f}", row ? static_cast<double>(v) / row : 0.0);
        norm += "\n";
      }
      write_text_atomic(o / "confusion_normalized.csv", norm);
      auto pairs = most_confused(conf, 10);
      std::string pc = "true,predicted,count,share_of_true_class\n";
      nlohmann::json jp = nlohmann::json::array();
      for (const auto& p : pairs) {
        int64_t row = 0;
        for (int64_t v : conf[p.true_class]) row += v;
        pc += fmt::format("{},{},{},{:.4f}\n", names[p.true_class], names[p.predicted_class], p.count,
                          row ? static_cast<double>(p.count) / row : 0.0);
        jp.push_back({{"true", names[p.true_class]}, {"predicted", names[p.predicted_class]}, {"count", p.count}});
      }
      write_text_atomic(o / "confused_pairs.csv", pc);

      // the most confident mistakes first
      std::vector<Prediction> wrong;
      for (const auto& p : preds)
        if (p.label != p.prediction) wrong.push_back(p);
      std::stable_sort(wrong.begin(), wrong.end(), [](const Prediction& a, const Prediction& b) {
        return a.probs.at(a.prediction) > b.probs.at(b.prediction);
      });
      if (wrong.size() > 40) wrong.resize(40);
      data::write_png((o / "misclassified.png").string(),
                      draw_misclassified(test, wrong, names, display + ": most confident mistakes (T true, P predicted)"));

      // Grad-CAM over the first samples/2 mistakes and as many correct predictions
      std::string cam_note;
      try {
        RunModel l = load_run_model(run, key);
        std::vector<Prediction> pick;
        for (const auto& p : wrong)
          if (static_cast<int64_t>(pick.size()) < samples / 2) pick.push_back(p);
        for (const auto& p : preds)
          if (p.label == p.prediction && static_cast<int64_t>(pick.size()) < samples) pick.push_back(p);
        std::vector<int64_t> idx, cls;
        for (const auto& p : pick) {
          idx.push_back(p.index);
          cls.push_back(p.prediction);
        }
        Tensor raw = ops::index_select(test.images, 0, from_vector<int64_t>(idx, {static_cast<int64_t>(idx.size())}));
        Generator g(0);
        Tensor x = l.transform->apply(raw, g);
        Tensor cams = grad_cam(*l.model, x, cls);
        data::write_png((o / "gradcam.png").string(),
                        draw_gradcam(test, pick, cams, names,
                                     fmt::format("{}: Grad-CAM on {} for the predicted class", display, l.model->cam_layer_name())));
        cam_note = "gradcam.png";
      } catch (const std::exception& e) {
        cam_note = fmt::format("Grad-CAM not drawn: {}", e.what());
        std::cout << display << ": " << cam_note << "\n";
      }
      write_json(o / "summary.json", {{"model", key}, {"most_confused", jp}, {"misclassified_shown", wrong.size()},
                                      {"gradcam", cam_note}});
      std::cout << display << ": most confused ";
      for (size_t i = 0; i < std::min<size_t>(3, pairs.size()); ++i)
        std::cout << (i ? "; " : "") << names[pairs[i].true_class] << " -> " << names[pairs[i].predicted_class] << " ("
                  << pairs[i].count << ")";
      std::cout << "\n  figures in " << o.string() << "\n";
      ++done;
    }
    if (done == 0) std::cout << "no trained model found in " << results << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error_analysis: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
