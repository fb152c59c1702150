// eda: exploratory analysis of Fashion-MNIST, the first step of the study.
//
//   build/bin/eda [--data-dir D] [--out DIR] [--val-fraction 0.1] [--seed 42]
//
// Writes a run folder (default runs/eda-<YYYYmmdd-HHMMSS>) holding
//   summary.json        counts per class and split, pixel mean/std per split (the train split's are
//                       the constants the scratch CNN normalises with), the split identity, the data
//                       directory and each file's size and SHA-256
//   config.json         the options, git commit and machine
//   class_counts.csv    class,train,val,test
//   samples.png         10 training-split images per class, each row labelled with its class
//   class_means.png     the mean training-split image of each class, labelled
// and prints a short table. Every file is written atomically.
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "data/fashion_mnist.h"
#include "data/image_draw.h"
#include "data/image_io.h"
#include "data/split.h"
#include "experiments/lib/run_dir.h"
#include "experiments/lib/run_record.h"
#include "models/io/sha256.h"

namespace fs = std::filesystem;
using namespace dl;
using data::kFashionMnistClassNames;

namespace {

constexpr int64_t kClasses = data::kFashionMnistClasses;

// Pixel statistics from an exact histogram of byte values: no rounding until the final division.
struct PixelStats {
  std::array<int64_t, 256> hist{};
  int64_t images = 0;
  void add(const uint8_t* px, int64_t n) {
    for (int64_t i = 0; i < n; ++i) ++hist[px[i]];
  }
  int64_t pixels() const {
    int64_t n = 0;
    for (int64_t h : hist) n += h;
    return n;
  }
  double mean() const {  // of value / 255
    double s = 0;
    for (int v = 0; v < 256; ++v) s += static_cast<double>(hist[v]) * (v / 255.0);
    return pixels() ? s / static_cast<double>(pixels()) : 0.0;
  }
  double std() const {  // population standard deviation of value / 255
    const double m = mean();
    double s = 0;
    for (int v = 0; v < 256; ++v) s += static_cast<double>(hist[v]) * (v / 255.0 - m) * (v / 255.0 - m);
    return pixels() ? std::sqrt(s / static_cast<double>(pixels())) : 0.0;
  }
  nlohmann::json to_json() const {
    return {{"images", images}, {"pixels", pixels()}, {"mean", mean()}, {"std", std()}};
  }
};

struct SubsetSummary {
  std::array<int64_t, kClasses> counts{};
  PixelStats stats;
  int64_t total() const {
    int64_t n = 0;
    for (int64_t c : counts) n += c;
    return n;
  }
};

SubsetSummary summarise(const data::ImageSet& set, const std::vector<int64_t>& indices) {
  SubsetSummary s;
  const int64_t hw = set.images.size(1) * set.images.size(2);
  const uint8_t* px = set.images.data_ptr<uint8_t>();
  const int64_t* lab = set.labels.data_ptr<int64_t>();
  for (int64_t i : indices) {
    ++s.counts[static_cast<size_t>(lab[i])];
    s.stats.add(px + i * hw, hw);
    ++s.stats.images;
  }
  return s;
}

std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

nlohmann::json counts_json(const SubsetSummary& s) {
  // per_class in class-index order (the order of summary.json's class_names)
  return {{"total", s.total()}, {"per_class", std::vector<int64_t>(s.counts.begin(), s.counts.end())}};
}

// 10 images per class from the training split (a seeded choice), one labelled row per class.
data::Image sample_grid(const data::ImageSet& train, const std::vector<int64_t>& split_train, uint64_t seed) {
  constexpr int64_t per_class = 10, scale = 2, gap = 4, font = 2;
  const int64_t H = train.images.size(1), W = train.images.size(2);
  std::vector<std::vector<int64_t>> by_class(kClasses);
  const int64_t* lab = train.labels.data_ptr<int64_t>();
  for (int64_t i : split_train) by_class[static_cast<size_t>(lab[i])].push_back(i);
  Generator gen(seed);
  int64_t label_w = 0;
  for (auto name : kFashionMnistClassNames) label_w = std::max(label_w, data::text_width(std::string(name), font));
  label_w += 2 * gap;
  const std::string title = "Fashion-MNIST training split: 10 random images per class";
  const int64_t title_h = data::text_height(title, font) + 2 * gap;
  const int64_t cell = H * scale + gap;
  data::Image img(std::max(label_w + per_class * (W * scale + gap) + gap, data::text_width(title, font) + 2 * gap),
                  title_h + kClasses * cell + gap, 1, 255);
  data::draw_text(img, gap, gap, title, font, {0, 0, 0, 255});
  const uint8_t* px = train.images.data_ptr<uint8_t>();
  for (int64_t c = 0; c < kClasses; ++c) {
    auto& idx = by_class[static_cast<size_t>(c)];
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[gen.below(i)]);
    const int64_t y = title_h + c * cell;
    const std::string name(kFashionMnistClassNames[c]);
    data::draw_text(img, gap, y + (H * scale - data::text_height(name, font)) / 2, name, font, {0, 0, 0, 255});
    for (int64_t k = 0; k < per_class && k < static_cast<int64_t>(idx.size()); ++k)
      data::paste_gray(img, label_w + k * (W * scale + gap), y, px + idx[static_cast<size_t>(k)] * H * W, H, W, scale);
  }
  return img;
}

// The mean image of each class over the training split, labelled, 5 per row.
data::Image class_means(const data::ImageSet& train, const std::vector<int64_t>& split_train,
                        std::vector<double>& mean_intensity) {
  constexpr int64_t cols = 5, scale = 4, gap = 12, font = 2;
  const int64_t H = train.images.size(1), W = train.images.size(2), hw = H * W;
  std::vector<std::vector<double>> sums(kClasses, std::vector<double>(static_cast<size_t>(hw), 0.0));
  std::vector<int64_t> counts(kClasses, 0);
  const uint8_t* px = train.images.data_ptr<uint8_t>();
  const int64_t* lab = train.labels.data_ptr<int64_t>();
  for (int64_t i : split_train) {
    auto& s = sums[static_cast<size_t>(lab[i])];
    for (int64_t p = 0; p < hw; ++p) s[static_cast<size_t>(p)] += px[i * hw + p];
    ++counts[static_cast<size_t>(lab[i])];
  }
  const std::string title = "Mean image per class (training split)";
  const int64_t title_h = data::text_height(title, font) + 2 * gap;
  const int64_t label_h = data::text_height("Ag", font) + gap;
  const int64_t tile_w = W * scale + gap, tile_h = H * scale + label_h + gap;
  const int64_t rows = (kClasses + cols - 1) / cols;
  data::Image img(std::max(cols * tile_w + gap, data::text_width(title, font) + 2 * gap), title_h + rows * tile_h, 1, 255);
  data::draw_text(img, gap, gap, title, font, {0, 0, 0, 255});
  mean_intensity.assign(kClasses, 0.0);
  std::vector<uint8_t> tile(static_cast<size_t>(hw));
  for (int64_t c = 0; c < kClasses; ++c) {
    const double n = static_cast<double>(std::max<int64_t>(counts[c], 1));
    double total = 0;
    for (int64_t p = 0; p < hw; ++p) {
      const double m = sums[c][static_cast<size_t>(p)] / n;
      total += m;
      tile[static_cast<size_t>(p)] = static_cast<uint8_t>(std::lround(std::clamp(m, 0.0, 255.0)));
    }
    mean_intensity[static_cast<size_t>(c)] = total / static_cast<double>(hw) / 255.0;
    const int64_t x = gap + (c % cols) * tile_w, y = title_h + (c / cols) * tile_h;
    data::paste_gray(img, x, y, tile.data(), H, W, scale);
    const std::string name(kFashionMnistClassNames[c]);
    data::draw_text(img, x + (W * scale - data::text_width(name, font)) / 2, y + H * scale + gap / 2, name, font,
                    {0, 0, 0, 255});
  }
  return img;
}

nlohmann::json file_info(const std::string& path) {
  return {{"name", fs::path(path).filename().string()},
          {"path", fs::absolute(path).string()},
          {"bytes", static_cast<int64_t>(fs::file_size(path))},
          {"sha256", io::sha256_file(path)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"eda: exploratory analysis of Fashion-MNIST (counts, pixel statistics, sample and mean-image figures)"};
  std::string data_dir, out;
  double val_fraction = 0.1;
  uint64_t seed = 42;
  app.add_option("--data-dir", data_dir,
                 "folder with the four Fashion-MNIST IDX files (default: $DL_DATA_DIR, else /usr/share/datasets/fashion-mnist)");
  app.add_option("--out", out, "run folder to write (default: runs/eda-<YYYYmmdd-HHMMSS>)");
  app.add_option("--val-fraction", val_fraction, "fraction of each class's training images held out for validation")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed of the train/validation split and of the sample choice")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (!(val_fraction >= 0.0 && val_fraction < 1.0)) fail("--val-fraction must be in [0, 1), got {}", val_fraction);
    const std::string dir = data::fashion_mnist_dir(data_dir.empty() ? std::nullopt : std::optional(data_dir));
    auto t0 = std::chrono::steady_clock::now();
    data::ImageSet train = data::load_fashion_mnist(dir, data::FashionSplit::Train);
    data::ImageSet test = data::load_fashion_mnist(dir, data::FashionSplit::Test);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    data::Split split = data::stratified_split(train.labels, kClasses, val_fraction, seed);

    const fs::path run = exp::create_run_dir("eda", out.empty() ? std::nullopt : std::optional(out));
    SubsetSummary s_train = summarise(train, split.train);
    SubsetSummary s_val = summarise(train, split.val);
    SubsetSummary s_test = summarise(test, all_indices(test.size()));
    SubsetSummary s_full = summarise(train, all_indices(train.size()));

    data::write_png((run / "samples.png").string(), sample_grid(train, split.train, seed));
    std::vector<double> mean_intensity;
    data::write_png((run / "class_means.png").string(), class_means(train, split.train, mean_intensity));

    std::string csv = "class,train,val,test\n";
    for (int64_t c = 0; c < kClasses; ++c)
      csv += fmt::format("{},{},{},{}\n", kFashionMnistClassNames[c], s_train.counts[c], s_val.counts[c], s_test.counts[c]);
    exp::write_text_atomic(run / "class_counts.csv", csv);

    nlohmann::json files = nlohmann::json::array();
    for (const std::string& p : {train.images_path, train.labels_path, test.images_path, test.labels_path})
      files.push_back(file_info(p));
    std::vector<std::string> names(kFashionMnistClassNames.begin(), kFashionMnistClassNames.end());
    nlohmann::json summary = {
        {"dataset", "Fashion-MNIST"},
        {"data_dir", fs::absolute(dir).string()},
        {"files", files},
        {"class_names", names},
        {"image_size", {train.images.size(1), train.images.size(2)}},
        {"split", split.identity.to_json()},
        {"counts", {{"train", counts_json(s_train)}, {"val", counts_json(s_val)}, {"test", counts_json(s_test)},
                    {"train_full", counts_json(s_full)}}},
        {"pixel_stats",
         {{"note", "values scaled to [0, 1]; std is the population standard deviation over all pixels"},
          {"train", s_train.stats.to_json()},
          {"val", s_val.stats.to_json()},
          {"test", s_test.stats.to_json()},
          {"train_full", s_full.stats.to_json()}}},
        {"normalization", {{"mean", s_train.stats.mean()}, {"std", s_train.stats.std()},
                           {"from", "train split (validation images excluded)"}}},
        {"class_mean_intensity_train", mean_intensity},
        {"outputs", {"summary.json", "config.json", "class_counts.csv", "samples.png", "class_means.png"}},
        {"load_seconds", load_s},
    };
    exp::write_json(run / "summary.json", summary);
    exp::write_json(run / "config.json", {{"program", "eda"},
                                          {"data_dir", fs::absolute(dir).string()},
                                          {"val_fraction", val_fraction},
                                          {"seed", seed},
                                          {"out", run.string()},
                                          {"split", split.identity.to_json()},
                                          {"git_commit", exp::git_commit()},
                                          {"machine", exp::machine_description()},
                                          {"timestamp", exp::timestamp()}});

    fmt::print("Fashion-MNIST from {} ({:.2f} s to load)\n", dir, load_s);
    fmt::print("split: seed {}, validation fraction {}, train {} / val {} images, hashes {} / {}\n\n", seed,
               val_fraction, split.identity.train_size, split.identity.val_size, split.identity.train_hash,
               split.identity.val_hash);
    fmt::print("{:<12} {:>7} {:>7} {:>7}  {:>10}\n", "class", "train", "val", "test", "mean pixel");
    for (int64_t c = 0; c < kClasses; ++c)
      fmt::print("{:<12} {:>7} {:>7} {:>7}  {:>10.4f}\n", kFashionMnistClassNames[c], s_train.counts[c],
                 s_val.counts[c], s_test.counts[c], mean_intensity[static_cast<size_t>(c)]);
    fmt::print("{:<12} {:>7} {:>7} {:>7}\n\n", "total", s_train.total(), s_val.total(), s_test.total());
    fmt::print("pixel mean / std (values in [0, 1]):\n");
    fmt::print("  train split  {:.6f} / {:.6f}   <- the scratch CNN's normalisation\n", s_train.stats.mean(),
               s_train.stats.std());
    fmt::print("  val split    {:.6f} / {:.6f}\n", s_val.stats.mean(), s_val.stats.std());
    fmt::print("  test         {:.6f} / {:.6f}\n", s_test.stats.mean(), s_test.stats.std());
    fmt::print("  all 60,000   {:.6f} / {:.6f}\n\n", s_full.stats.mean(), s_full.stats.std());
    fmt::print("wrote {}\n", run.string());
  } catch (const std::exception& e) {
    std::cerr << "eda: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
