// bench_pipeline: images/second of the ResNet input pipeline (uint8 28x28 -> float [0,1] ->
// bilinear S x S -> 3 channels -> ImageNet normalisation), batch 64, median of several runs.
//
//   bench_pipeline [--size 224] [--batch 64] [--batches 8] [--runs 7] [--data-dir D]
//
// Reports the fused kernel (data::resnet_input) on one thread and on all threads, the same work as
// four separate transforms (to_float, resize, gray_to_rgb, normalize) on one thread, and the
// DataLoader delivering batches with one worker thread. tools/bench_pipeline.py measures
// torchvision on the same machine with matching thread counts.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "data/fashion_mnist.h"
#include "data/loader.h"
#include "data/transforms.h"

using namespace dl;
using namespace dl::data;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// images/second of `work` (which processes `images` images), median over `runs` after a warm-up
double images_per_second(int runs, int64_t images, const std::function<void()>& work) {
  work();
  std::vector<double> rates;
  for (int r = 0; r < runs; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    work();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(static_cast<double>(images) / s);
  }
  return median(rates);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_pipeline: images/second of the ResNet input pipeline"};
  int64_t size = 224, batch = 64, batches = 8;
  int runs = 7;
  std::string data_dir;
  app.add_option("--size", size, "output side S")->capture_default_str();
  app.add_option("--batch", batch, "images per batch")->capture_default_str();
  app.add_option("--batches", batches, "batches per timed run")->capture_default_str();
  app.add_option("--runs", runs, "timed runs (the median is reported)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "Fashion-MNIST folder (default: $DL_DATA_DIR or Debian's); random images if absent");
  CLI11_PARSE(app, argc, argv);
  try {
    const int64_t n = batch * batches;
    Tensor images;
    std::string source = "random uint8 images";
    try {
      ImageSet test = load_fashion_mnist(fashion_mnist_dir(data_dir.empty() ? std::nullopt : std::optional(data_dir)),
                                         FashionSplit::Test);
      if (test.size() >= n) {
        images = test.images;
        source = "Fashion-MNIST test images";
      }
    } catch (const Error&) {
    }
    if (!images.defined()) {
      Generator g(1);
      images = empty({n, 28, 28}, DType::UInt8);
      for (int64_t i = 0; i < images.numel(); ++i) images.data_ptr<uint8_t>()[i] = static_cast<uint8_t>(g.below(256));
    }
    std::vector<Tensor> inputs;
    for (int64_t b = 0; b < batches; ++b) {
      Tensor x = empty({batch, 28, 28}, DType::UInt8);
      std::copy_n(images.data_ptr<uint8_t>() + b * batch * 784, batch * 784, x.data_ptr<uint8_t>());
      inputs.push_back(x);
    }
    const int all = omp_get_max_threads();
    const BilinearPlan plan = make_bilinear_plan(28, 28, size, size);
    std::printf("ResNet input pipeline: uint8 28x28 -> normalised 3x%ldx%ld float32, batch %ld, %ld batches per run, "
                "median of %d runs (%s)\n", static_cast<long>(size), static_cast<long>(size), static_cast<long>(batch),
                static_cast<long>(batches), runs, source.c_str());

    auto fused = [&](int threads) {
      return images_per_second(runs, n, [&] {
        for (const Tensor& x : inputs) resnet_input(x, plan, kImageNetMean, kImageNetStd, threads);
      });
    };
    const double fused1 = fused(1);
    std::printf("  fused kernel, 1 thread            %10.0f images/s\n", fused1);
    const double fused_all = fused(all);
    std::printf("  fused kernel, %2d threads          %10.0f images/s\n", all, fused_all);

    auto composed = transforms::Compose({transforms::ToFloat(), transforms::Resize(size, size), transforms::GrayToRgb(),
                                         transforms::Normalize({0.485, 0.456, 0.406}, {0.229, 0.224, 0.225})});
    omp_set_num_threads(1);
    Generator gen(0);
    const double comp1 = images_per_second(runs, n, [&] {
      for (const Tensor& x : inputs) composed->apply(x, gen);
    });
    omp_set_num_threads(all);
    std::printf("  4 separate transforms, 1 thread   %10.0f images/s\n", comp1);

    LoaderOptions o;
    o.batch_size = batch;
    o.drop_last = true;
    o.num_workers = 1;
    o.threads_per_worker = 1;
    Tensor labels = zeros({images.size(0)}, DType::Int64);
    std::vector<int64_t> subset(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) subset[static_cast<size_t>(i)] = i;
    DataLoader loader(images, labels, subset, transforms::ResnetInput(size), o);
    int64_t epoch = 0;
    const double loader1 = images_per_second(runs, n, [&] {
      for (Batch& b : loader.epoch(epoch++)) (void)b;
    });
    std::printf("  DataLoader, 1 worker x 1 thread   %10.0f images/s\n", loader1);
    std::printf("{\"size\": %ld, \"batch\": %ld, \"fused_1_thread\": %.0f, \"fused_%d_threads\": %.0f, "
                "\"composed_1_thread\": %.0f, \"loader_1_worker\": %.0f}\n",
                static_cast<long>(size), static_cast<long>(batch), fused1, all, fused_all, comp1, loader1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
