#pragma once
// Batch transforms for image classification.
//
// Design
// - Transforms work on whole batches held as dl::Tensor. The data set's images are uint8,
//   (N, H, W) or (N, C, H, W); `to_float` turns them into float32 (N, C, H, W) in [0, 1]. Every
//   other transform takes a float32 (or float64) NCHW tensor and returns a new contiguous one
//   (the input is never modified), so a pipeline is a chain of plain functions.
// - Random transforms take an explicit dl::Generator and draw for the samples in batch order
//   (torchvision's per-sample semantics: each image gets its own crop, flip, erasing box). A batch's
//   result depends only on the generator's state, so the loader (data/loader.h), which seeds one
//   generator per (seed, epoch, batch), gives identical batches with 0 or 8 worker threads.
// - `Transform` objects wrap the functions for composition (Compose, like torchvision's) and
//   carry a name() for run records.
// - Resizing is bilinear with PyTorch's `F.interpolate(mode="bilinear", align_corners=False,
//   antialias=False)` arithmetic (same source indices, same weights, same float order of
//   operations), so results agree to float rounding.
// - The ResNet input path (uint8 28x28 -> [0,1] -> bilinear S x S -> 3 channels -> ImageNet
//   normalisation) has a fused kernel, `resnet_input`, that goes from uint8 straight to the
//   normalised (N, 3, S, S) output with weights precomputed per size (BilinearPlan), OpenMP over
//   images. Only the batch is resized; no resized copy of the data set is ever made.
// - Batch-level MixUp and CutMix return the mixed images, both target vectors and lambda
//   (loss = lambda * CE(out, targets_a) + (1 - lambda) * CE(out, targets_b)); the partner of
//   sample i is sample i-1 (the batch rolled by one), as in torchvision.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl::data {

inline constexpr std::array<double, 3> kImageNetMean = {0.485, 0.456, 0.406};
inline constexpr std::array<double, 3> kImageNetStd = {0.229, 0.224, 0.225};

// ---- deterministic transforms ------------------------------------------------------------------
// uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W) = value / 255 (C = 1 for 3-D input).
Tensor to_float(const Tensor& images);
// (x - mean[c]) / std[c] per channel; mean/std hold C values or 1 (used for every channel).
Tensor normalize(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std);
// (N, 1, H, W) -> (N, 3, H, W), the one channel copied three times.
Tensor gray_to_rgb(const Tensor& x);
// Bilinear resize of (N, C, H, W) to (N, C, out_h, out_w), align_corners=False, no antialias.
Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w);
// Constant padding of the last two dims.
Tensor pad(const Tensor& x, int64_t left, int64_t top, int64_t right, int64_t bottom, double fill = 0.0);

// ---- random transforms (torchvision semantics, one draw per sample) ------------------------------
// Pads by `padding` (fill), then takes a random out_h x out_w window per image.
Tensor random_crop(const Tensor& x, int64_t out_h, int64_t out_w, int64_t padding, Generator& gen, double fill = 0.0);
// Mirrors each image left-right with probability p.
Tensor random_horizontal_flip(const Tensor& x, double p, Generator& gen);

struct RandomErasingOptions {
  double p = 0.5;                                 // probability that an image gets a box
  std::array<double, 2> scale = {0.02, 0.33};     // box area / image area, uniform in this range
  std::array<double, 2> ratio = {0.3, 3.3};       // aspect ratio, log-uniform in this range
  std::vector<double> value = {0.0};              // fill per channel (1 or C values)...
  bool random_value = false;                      // ...or standard-normal noise per pixel
};
// torchvision.transforms.RandomErasing: up to 10 tries to find a box that fits, else unchanged.
Tensor random_erasing(const Tensor& x, const RandomErasingOptions& opts, Generator& gen);

// ---- batch mixing ----------------------------------------------------------------------------------
struct MixedBatch {
  Tensor images;     // (N, C, H, W) mixed
  Tensor targets_a;  // (N) int64, the original labels (weight lambda)
  Tensor targets_b;  // (N) int64, the partner's labels (weight 1 - lambda)
  double lambda = 1.0;
  // lambda * one_hot(a) + (1 - lambda) * one_hot(b), float32 (N, num_classes).
  Tensor soft_targets(int64_t num_classes) const;
};
// MixUp: lambda ~ Beta(alpha, alpha); images = lambda * x + (1 - lambda) * x.roll(1, 0).
MixedBatch mixup(const Tensor& images, const Tensor& labels, double alpha, Generator& gen);
// CutMix: lambda ~ Beta(alpha, alpha) sets a box of area (1 - lambda) * H * W centred at a random
// pixel (clipped to the image), filled from x.roll(1, 0); lambda is then 1 - box area / (H * W).
MixedBatch cutmix(const Tensor& images, const Tensor& labels, double alpha, Generator& gen);
// A Beta(a, b) draw (Marsaglia-Tsang gamma variates from `gen`).
double sample_beta(double a, double b, Generator& gen);

// ---- the fused ResNet input path ---------------------------------------------------------------
// Source indices and weights of a bilinear resize along one axis (PyTorch's arithmetic, float).
struct BilinearAxis {
  int64_t in = 0, out = 0;
  std::vector<int32_t> i0, i1;
  std::vector<float> w0, w1;
};
BilinearAxis bilinear_axis(int64_t in, int64_t out);
struct BilinearPlan {
  BilinearAxis rows, cols;  // rows: in_h -> out_h, cols: in_w -> out_w
};
BilinearPlan make_bilinear_plan(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w);

// uint8 (N, H, W) or (N, 1, H, W) -> float32 (N, 3, S, S): ((bilinear(x / 255) - mean[c]) / std[c]).
// `threads` <= 0 uses OpenMP's default; 1 runs on the calling thread only.
Tensor resnet_input(const Tensor& images, int64_t size, const std::array<double, 3>& mean = kImageNetMean,
                    const std::array<double, 3>& std = kImageNetStd, int threads = 0);
// The same with a precomputed plan (its input size must match the images').
Tensor resnet_input(const Tensor& images, const BilinearPlan& plan, const std::array<double, 3>& mean,
                    const std::array<double, 3>& std, int threads = 0);

// ---- composable transform objects ---------------------------------------------------------------
class Transform {
 public:
  virtual ~Transform() = default;
  virtual Tensor apply(const Tensor& batch, Generator& gen) const = 0;
  Tensor operator()(const Tensor& batch, Generator& gen) const { return apply(batch, gen); }
  virtual std::string name() const = 0;  // e.g. "Normalize(mean=[0.286], std=[0.353])"
};
using TransformPtr = std::shared_ptr<const Transform>;

namespace transforms {
TransformPtr Compose(std::vector<TransformPtr> steps);
TransformPtr ToFloat();
TransformPtr Normalize(std::vector<double> mean, std::vector<double> std);
TransformPtr GrayToRgb();
TransformPtr Resize(int64_t out_h, int64_t out_w);
TransformPtr Pad(int64_t padding, double fill = 0.0);
TransformPtr RandomCrop(int64_t out_h, int64_t out_w, int64_t padding = 0, double fill = 0.0);
TransformPtr RandomHorizontalFlip(double p = 0.5);
TransformPtr RandomErasing(RandomErasingOptions opts = {});
// The fused uint8 -> normalised 3 x size x size path; its plan is built once for in_h x in_w.
TransformPtr ResnetInput(int64_t size = 224, int64_t in_h = 28, int64_t in_w = 28,
                         std::array<double, 3> mean = kImageNetMean, std::array<double, 3> std = kImageNetStd,
                         int threads = 0);
TransformPtr Lambda(std::string name, std::function<Tensor(const Tensor&, Generator&)> fn);
}  // namespace transforms

}  // namespace dl::data
