// Batch transforms: deterministic ones against hand-computed values, random ones against their
// torchvision semantics (what each may and must do), MixUp/CutMix bookkeeping, and the fused
// ResNet input path against the composed one.
#include <algorithm>
#include <cmath>
#include <set>

#include "data/transforms.h"
#include "data_test_util.h"
#include "tensor/ops.h"
#include "test_util.h"

using namespace dl;
using namespace dl::data;

namespace {

Tensor random_u8(const Shape& s, uint64_t seed) {
  Generator g(seed);
  Tensor t = empty(s, DType::UInt8);
  uint8_t* p = t.data_ptr<uint8_t>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<uint8_t>(g.below(256));
  return t;
}

Tensor random_f32(const Shape& s, uint64_t seed) { return to_float(random_u8(s, seed)); }

bool same(const Tensor& a, const Tensor& b) { return a.sizes() == b.sizes() && a.to_vector<double>() == b.to_vector<double>(); }

}  // namespace

TEST_CASE("to_float, normalize, gray_to_rgb and pad compute what they say") {
  Tensor u = from_vector<uint8_t>({0, 51, 255, 102, 1, 254}, {2, 1, 3});  // (N, H, W)
  Tensor f = to_float(u);
  CHECK(f.sizes() == Shape{2, 1, 1, 3});
  CHECK(f.dtype() == DType::Float32);
  CHECK(f.at<float>({0, 0, 0, 1}) == 51.0f / 255.0f);
  CHECK(f.at<float>({1, 0, 0, 2}) == 254.0f / 255.0f);
  CHECK(to_float(random_u8({2, 3, 4, 5}, 1)).sizes() == Shape{2, 3, 4, 5});

  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8}, {1, 2, 2, 2});
  Tensor n = normalize(x, {1.0, 2.0}, {2.0, 4.0});
  CHECK(n.to_vector<float>() == std::vector<float>{0, 0.5f, 1, 1.5f, 0.75f, 1, 1.25f, 1.5f});
  CHECK_ERROR(normalize(x, {0.1, 0.2, 0.3}, {1.0}), {"normalize", "1 or 2", "2 channels"});
  CHECK_ERROR(normalize(x, {0.1}, {0.0}), {"normalize", "std", "positive"});

  Tensor g = gray_to_rgb(from_vector<float>({1, 2, 3, 4}, {2, 1, 1, 2}));
  CHECK(g.sizes() == Shape{2, 3, 1, 2});
  CHECK(g.to_vector<float>() == std::vector<float>{1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4});
  CHECK_ERROR(gray_to_rgb(g), {"gray_to_rgb", "one channel"});

  Tensor p = pad(from_vector<float>({1, 2}, {1, 1, 1, 2}), 1, 0, 2, 1, -1.0);
  CHECK(p.sizes() == Shape{1, 1, 2, 5});
  CHECK(p.to_vector<float>() == std::vector<float>{-1, 1, 2, -1, -1, -1, -1, -1, -1, -1});

  // wrong input types get messages that say what to do
  CHECK_ERROR(resize_bilinear(u.unsqueeze(1), 4, 4), {"resize_bilinear", "uint8", "to_float"});
  CHECK_ERROR(to_float(f), {"to_float", "uint8"});
  CHECK_ERROR(resize_bilinear(f, 0, 3), {"resize_bilinear", "output size"});
}

TEST_CASE("resize_bilinear: identity at the same size, constant images stay constant, weights sum to 1") {
  Tensor x = random_f32({2, 3, 9, 7}, 3);
  CHECK(same(resize_bilinear(x, 9, 7), x));
  Tensor c = full({1, 1, 5, 6}, 0.25);
  for (auto [h, w] : {std::pair<int64_t, int64_t>{11, 13}, {2, 3}, {224, 224}, {1, 1}}) {
    Tensor r = resize_bilinear(c, h, w);
    CHECK(r.sizes() == Shape{1, 1, h, w});
    for (float v : r.to_vector<float>()) CHECK(v == doctest::Approx(0.25).epsilon(1e-6));
  }
  for (auto [in, out] : {std::pair<int64_t, int64_t>{28, 224}, {28, 64}, {13, 7}, {1, 5}, {5, 1}}) {
    BilinearAxis a = bilinear_axis(in, out);
    for (int64_t i = 0; i < out; ++i) {
      CHECK(a.w0[i] + a.w1[i] == doctest::Approx(1.0).epsilon(1e-7));
      CHECK((a.i0[i] >= 0 && a.i0[i] <= a.i1[i] && a.i1[i] < in));
    }
  }
  // upsampling 28 -> 224 (scale 1/8): output pixel 0 sits at source -0.4375 -> clamped to 0
  BilinearAxis a = bilinear_axis(28, 224);
  CHECK(a.i0[0] == 0);
  CHECK(a.w1[0] == 0.0f);
  CHECK(a.i0[8] == 0);  // source 0.5625
  CHECK(a.w1[8] == doctest::Approx(0.5625));
}

TEST_CASE("the fused ResNet input path equals the composed pipeline, with any thread count") {
  Tensor u = random_u8({5, 28, 28}, 11);
  Generator gen(0);
  for (int64_t size : {224, 64, 37, 28, 13}) {
    CAPTURE(size);
    auto composed = transforms::Compose({transforms::ToFloat(), transforms::Resize(size, size), transforms::GrayToRgb(),
                                         transforms::Normalize({0.485, 0.456, 0.406}, {0.229, 0.224, 0.225})});
    Tensor ref = composed->apply(u, gen);
    Tensor fused = resnet_input(u, size);
    CHECK(fused.sizes() == Shape{5, 3, size, size});
    // the fused kernel multiplies by 1/std where torchvision divides: float rounding only
    CHECK_CLOSE(fused, ref, 0.0, 1e-5);
    CHECK(same(resnet_input(u, size, kImageNetMean, kImageNetStd, 1), resnet_input(u, size, kImageNetMean, kImageNetStd, 3)));
  }
  // (N, 1, H, W) input and the transform object with its precomputed plan
  auto t = transforms::ResnetInput(64);
  CHECK(t->name().find("ResnetInput(size=64") == 0);
  CHECK(same(t->apply(u.unsqueeze(1), gen), resnet_input(u, 64)));
  CHECK(same(t->apply(random_u8({2, 20, 20}, 1), gen), resnet_input(random_u8({2, 20, 20}, 1), 64)));
  CHECK_ERROR(resnet_input(random_u8({2, 3, 28, 28}, 1), 64), {"resnet_input", "grayscale"});
  CHECK_ERROR(resnet_input(to_float(u), 64), {"resnet_input", "uint8"});
  CHECK(resnet_input(random_u8({0, 28, 28}, 1), 64).sizes() == Shape{0, 3, 64, 64});
}

TEST_CASE("random_crop takes a window of the padded image, per image, reproducibly") {
  const int64_t pad_px = 3;
  Tensor x = random_f32({16, 2, 8, 8}, 5);
  Generator g1(9), g2(9);
  Tensor a = random_crop(x, 8, 8, pad_px, g1);
  CHECK(same(a, random_crop(x, 8, 8, pad_px, g2)));
  Tensor padded = pad(x, pad_px, pad_px, pad_px, pad_px, 0.0);
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (int64_t n = 0; n < 16; ++n) {
    bool found = false;
    for (int64_t i = 0; i <= 2 * pad_px && !found; ++i)
      for (int64_t j = 0; j <= 2 * pad_px && !found; ++j) {
        Tensor win = ops::contiguous(padded.select(0, n).slice(1, i, i + 8).slice(2, j, j + 8));
        if (same(win, ops::contiguous(a.select(0, n)))) {
          found = true;
          offsets.insert({i, j});
        }
      }
    CHECK(found);
  }
  CHECK(offsets.size() > 4);  // per-image offsets, not one for the whole batch
  Generator g3(1);
  CHECK(random_crop(x, 5, 6, 0, g3).sizes() == Shape{16, 2, 5, 6});
  CHECK_ERROR(random_crop(x, 15, 8, 3, g3), {"random_crop", "15x8", "14x14"});
}

TEST_CASE("random_horizontal_flip mirrors each image with probability p") {
  Tensor x = random_f32({200, 1, 3, 4}, 8);
  Generator g(4);
  CHECK(same(random_horizontal_flip(x, 0.0, g), x));
  Tensor all = random_horizontal_flip(x, 1.0, g);
  for (int64_t j = 0; j < 4; ++j)
    CHECK(same(ops::contiguous(all.slice(3, j, j + 1)), ops::contiguous(x.slice(3, 3 - j, 4 - j))));
  Tensor half = random_horizontal_flip(x, 0.5, g);
  int flipped = 0;
  for (int64_t n = 0; n < 200; ++n) {
    Tensor h = ops::contiguous(half.select(0, n)), o = ops::contiguous(x.select(0, n));
    if (!same(h, o)) {
      ++flipped;
      CHECK(same(h, ops::contiguous(all.select(0, n))));
    }
  }
  CHECK((flipped > 70 && flipped < 130));
  CHECK_ERROR(random_horizontal_flip(x, 1.5, g), {"p must be in [0, 1]"});
}

TEST_CASE("random_erasing blanks one box of the allowed area and aspect per image") {
  const int64_t N = 300, H = 28, W = 28;
  Tensor x = ones({N, 1, H, W});
  Generator g(21);
  RandomErasingOptions o;
  o.p = 1.0;
  Tensor e = random_erasing(x, o, g);
  auto v = e.to_vector<float>();
  int erased = 0;
  for (int64_t n = 0; n < N; ++n) {
    int64_t y0 = H, y1 = -1, x0 = W, x1 = -1, zeros_n = 0;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t xx = 0; xx < W; ++xx)
        if (v[static_cast<size_t>((n * H + y) * W + xx)] == 0.0f) {
          ++zeros_n;
          y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, xx), x1 = std::max(x1, xx);
        }
    if (zeros_n == 0) continue;
    ++erased;
    const int64_t h = y1 - y0 + 1, w = x1 - x0 + 1;
    CHECK(zeros_n == h * w);  // one filled rectangle
    const double frac = static_cast<double>(h * w) / (H * W);
    // area uniform in [0.02, 0.33] of the image, h and w rounded: allow the rounding
    CHECK(frac >= 0.01);
    CHECK(frac <= 0.40);
    const double aspect = static_cast<double>(h) / static_cast<double>(w);
    CHECK(aspect >= 0.3 / 1.6);
    CHECK(aspect <= 3.3 * 1.6);
  }
  CHECK(erased >= N * 9 / 10);  // 10 tries nearly always find a box
  o.p = 0.0;
  CHECK(same(random_erasing(x, o, g), x));
  // per-channel values and random noise
  RandomErasingOptions rgb;
  rgb.p = 1.0;
  rgb.value = {0.5, 0.25, 0.125};
  Tensor e3 = random_erasing(ones({4, 3, 16, 16}), rgb, g);
  std::set<float> vals;
  for (float f : e3.to_vector<float>()) vals.insert(f);
  CHECK(vals == std::set<float>{0.125f, 0.25f, 0.5f, 1.0f});
  RandomErasingOptions noise;
  noise.p = 1.0;
  noise.random_value = true;
  std::set<float> nvals;
  for (float f : random_erasing(ones({4, 1, 16, 16}), noise, g).to_vector<float>()) nvals.insert(f);
  CHECK(nvals.size() > 10);
  RandomErasingOptions bad;
  bad.value = {1, 2};
  CHECK_ERROR(random_erasing(ones({1, 3, 4, 4}), bad, g), {"random_erasing", "1 or 3 fill values"});
}

TEST_CASE("mixup and cutmix mix with the rolled batch and report the pair of targets and lambda") {
  const int64_t N = 6;
  // image n is the constant n, so every pixel says where it came from
  Tensor x = empty({N, 2, 10, 12});
  for (int64_t n = 0; n < N; ++n) ops::fill_(x.select(0, n), static_cast<double>(n));
  Tensor labels = from_vector<int64_t>({0, 1, 2, 3, 4, 5}, {N});
  Generator g(5);
  MixedBatch m = mixup(x, labels, 0.4, g);
  CHECK((m.lambda >= 0.0 && m.lambda <= 1.0));
  CHECK(m.targets_a.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(m.targets_b.to_vector<int64_t>() == std::vector<int64_t>{5, 0, 1, 2, 3, 4});
  for (int64_t n = 0; n < N; ++n) {
    const double expect = m.lambda * n + (1 - m.lambda) * ((n + N - 1) % N);
    CHECK(m.images.at<float>({n, 1, 3, 4}) == doctest::Approx(expect).epsilon(1e-6));
  }
  Tensor soft = m.soft_targets(6);
  CHECK(soft.sizes() == Shape{N, 6});
  for (int64_t n = 0; n < N; ++n) {
    CHECK(soft.at<float>({n, n}) == doctest::Approx(m.lambda));
    double row = 0;
    for (int64_t k = 0; k < 6; ++k) row += soft.at<float>({n, k});
    CHECK(row == doctest::Approx(1.0));
  }

  for (int trial = 0; trial < 20; ++trial) {
    MixedBatch c = cutmix(x, labels, 1.0, g);
    CHECK(c.targets_b.to_vector<int64_t>() == std::vector<int64_t>{5, 0, 1, 2, 3, 4});
    for (int64_t n = 0; n < N; ++n) {
      int64_t own = 0, partner = 0;
      auto px = ops::contiguous(c.images.select(0, n)).to_vector<float>();
      for (float f : px) {
        if (f == static_cast<float>(n)) ++own;
        else if (f == static_cast<float>((n + N - 1) % N)) ++partner;
      }
      CHECK(own + partner == static_cast<int64_t>(px.size()));
      // lambda is the area kept, exactly
      CHECK(static_cast<double>(own) / static_cast<double>(px.size()) == doctest::Approx(c.lambda).epsilon(1e-12));
    }
  }
  CHECK_ERROR(mixup(x, from_vector<int64_t>({0, 1}, {2}), 0.4, g), {"mixup", "int64 labels of shape [6]"});
  CHECK_ERROR(cutmix(x, labels, 0.0, g), {"cutmix", "alpha must be positive"});
}

TEST_CASE("sample_beta draws from Beta(a, b)") {
  Generator g(123);
  for (auto [a, b] : {std::pair<double, double>{2.0, 5.0}, {0.2, 0.2}, {1.0, 1.0}}) {
    CAPTURE(a);
    const int n = 4000;
    double sum = 0, sq = 0;
    for (int i = 0; i < n; ++i) {
      double v = sample_beta(a, b, g);
      CHECK((v >= 0.0 && v <= 1.0));
      sum += v;
      sq += v * v;
    }
    const double mean = sum / n, var = sq / n - mean * mean;
    const double want_mean = a / (a + b), want_var = a * b / ((a + b) * (a + b) * (a + b + 1));
    // 5 standard errors of the mean
    CHECK(std::abs(mean - want_mean) < 5 * std::sqrt(want_var / n));
    CHECK(var == doctest::Approx(want_var).epsilon(0.1));
  }
  CHECK_ERROR(sample_beta(0.0, 1.0, g), {"sample_beta", "positive"});
}

TEST_CASE("Compose chains transforms and names them, and random ones follow the generator") {
  auto t = transforms::Compose({transforms::ToFloat(), transforms::RandomCrop(28, 28, 4), transforms::RandomHorizontalFlip(),
                                transforms::Normalize({0.2860}, {0.3530}), transforms::RandomErasing()});
  CHECK(t->name().find("Compose(ToFloat(), RandomCrop(28, 28, padding=4") == 0);
  Tensor u = random_u8({8, 28, 28}, 2);
  Generator g1(77), g2(77), g3(78);
  Tensor a = t->apply(u, g1);
  CHECK(a.sizes() == Shape{8, 1, 28, 28});
  CHECK(same(a, t->apply(u, g2)));
  CHECK(!same(a, t->apply(u, g3)));
  CHECK_ERROR(transforms::Compose({transforms::ToFloat(), nullptr}), {"Compose", "step 1"});
}
