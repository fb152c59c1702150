#include "experiments/lib/corruptions.h"

#include <algorithm>
#include <cmath>

#include "tensor/error.h"
#include "tensor/generator.h"

namespace dl::exp {

const std::vector<CorruptionSpec>& corruption_suite() {
  static const std::vector<CorruptionSpec> suite{
      {Corruption::GaussianNoise, "gaussian_noise", "noise standard deviation (grey levels of 255)", {10, 20, 35, 50, 70}},
      {Corruption::Blur, "blur", "Gaussian blur sigma (pixels)", {0.6, 0.9, 1.2, 1.6, 2.0}},
      {Corruption::Contrast, "contrast", "contrast factor around the image mean", {0.6, 0.45, 0.3, 0.2, 0.1}},
      {Corruption::Brightness, "brightness", "grey levels added", {40, 70, 100, 130, 160}},
      {Corruption::Rotation, "rotation", "rotation angle (degrees, sign random per image)", {8, 16, 24, 32, 40}},
      {Corruption::Translation, "translation", "shift length (pixels, direction random per image)", {2, 3, 4, 5, 6}},
      {Corruption::Occlusion, "occlusion", "side of a black square (pixels, centre random per image)", {6, 9, 12, 15, 18}},
  };
  return suite;
}

const CorruptionSpec& corruption_spec(Corruption c) {
  for (const auto& s : corruption_suite())
    if (s.kind == c) return s;
  fail("corruption_spec: unknown corruption {}", static_cast<int>(c));
}

namespace {

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::clamp<long>(std::lround(v), 0, 255)); }

// The image's own generator: seeded by (seed, corruption, index), never by the severity.
Generator image_generator(uint64_t seed, Corruption c, int64_t index) {
  uint64_t h = seed ^ 0x9E3779B97F4A7C15ULL;
  h = (h ^ static_cast<uint64_t>(c)) * 0x100000001B3ULL;
  h = (h ^ static_cast<uint64_t>(index)) * 0xBF58476D1CE4E5B9ULL;
  return Generator(h);
}

// Bilinear sample with 0 outside the image.
double sample(const uint8_t* in, int64_t h, int64_t w, double y, double x) {
  double fy = std::floor(y), fx = std::floor(x);
  int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
  double ty = y - fy, tx = x - fx, v = 0;
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx) {
      int64_t yy = y0 + dy, xx = x0 + dx;
      if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
      v += (dy ? ty : 1 - ty) * (dx ? tx : 1 - tx) * in[yy * w + xx];
    }
  return v;
}

}  // namespace

void corrupt_image(Corruption c, int severity, const uint8_t* in, uint8_t* out, int64_t h, int64_t w, int64_t index,
                   uint64_t seed) {
  if (severity < 0 || severity > kSeverities) fail("corrupt_image: severity {} is outside 0..{}", severity, kSeverities);
  const int64_t n = h * w;
  if (severity == 0) {
    std::copy(in, in + n, out);
    return;
  }
  const double p = corruption_spec(c).levels[severity - 1];
  Generator g = image_generator(seed, c, index);
  switch (c) {
    case Corruption::GaussianNoise:
      for (int64_t i = 0; i < n; ++i) out[i] = to_byte(in[i] + p * g.normal());
      break;
    case Corruption::Blur: {  // separable Gaussian, radius ceil(3 sigma), edges replicated
      const int64_t r = static_cast<int64_t>(std::ceil(3 * p));
      std::vector<double> k(2 * r + 1), tmp(n);
      double s = 0;
      for (int64_t i = -r; i <= r; ++i) s += k[i + r] = std::exp(-0.5 * i * i / (p * p));
      for (double& v : k) v /= s;
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          double v = 0;
          for (int64_t i = -r; i <= r; ++i) v += k[i + r] * in[y * w + std::clamp<int64_t>(x + i, 0, w - 1)];
          tmp[y * w + x] = v;
        }
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          double v = 0;
          for (int64_t i = -r; i <= r; ++i) v += k[i + r] * tmp[std::clamp<int64_t>(y + i, 0, h - 1) * w + x];
          out[y * w + x] = to_byte(v);
        }
      break;
    }
    case Corruption::Contrast: {
      double m = 0;
      for (int64_t i = 0; i < n; ++i) m += in[i];
      m /= static_cast<double>(n);
      for (int64_t i = 0; i < n; ++i) out[i] = to_byte(m + p * (in[i] - m));
      break;
    }
    case Corruption::Brightness:
      for (int64_t i = 0; i < n; ++i) out[i] = to_byte(in[i] + p);
      break;
    case Corruption::Rotation: {  // about the centre, bilinear, black outside
      const double a = (g.uniform() < 0.5 ? -1 : 1) * p * M_PI / 180.0, ca = std::cos(a), sa = std::sin(a);
      const double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {  // the source of output pixel (y, x): rotate back
          double dy = y - cy, dx = x - cx;
          out[y * w + x] = to_byte(sample(in, h, w, cy + ca * dy - sa * dx, cx + sa * dy + ca * dx));
        }
      break;
    }
    case Corruption::Translation: {  // whole pixels, black fill
      const double a = 2 * M_PI * g.uniform();
      const int64_t sx = std::lround(p * std::cos(a)), sy = std::lround(p * std::sin(a));
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          int64_t yy = y - sy, xx = x - sx;
          out[y * w + x] = (yy < 0 || yy >= h || xx < 0 || xx >= w) ? 0 : in[yy * w + xx];
        }
      break;
    }
    case Corruption::Occlusion: {  // centre uniform in the middle of the image, the square clipped at the edges
      const int64_t side = static_cast<int64_t>(p);
      const int64_t cy = h / 2 - h / 7 + static_cast<int64_t>(g.below(static_cast<uint64_t>(2 * (h / 7) + 1)));
      const int64_t cx = w / 2 - w / 7 + static_cast<int64_t>(g.below(static_cast<uint64_t>(2 * (w / 7) + 1)));
      const int64_t top = cy - side / 2, left = cx - side / 2;
      std::copy(in, in + n, out);
      for (int64_t y = std::max<int64_t>(0, top); y < std::min(h, top + side); ++y)
        for (int64_t x = std::max<int64_t>(0, left); x < std::min(w, left + side); ++x) out[y * w + x] = 0;
      break;
    }
  }
}

Tensor corrupt_images(const Tensor& images, const std::vector<int64_t>& indices, Corruption c, int severity,
                      uint64_t seed) {
  if (images.dtype() != DType::UInt8 || images.dim() != 3)
    fail("corrupt_images: expected (N, H, W) uint8 images, got {} of {} dimensions", dtype_name(images.dtype()),
         images.dim());
  const int64_t N = images.size(0), h = images.size(1), w = images.size(2);
  if (static_cast<int64_t>(indices.size()) != N)
    fail("corrupt_images: {} images but {} indices", N, indices.size());
  if (severity < 0 || severity > kSeverities) fail("corrupt_images: severity {} is outside 0..{}", severity, kSeverities);
  Tensor src = images.contiguous();
  Tensor out = empty({N, h, w}, DType::UInt8);
  const uint8_t* in = src.data_ptr<uint8_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) corrupt_image(c, severity, in + i * h * w, o + i * h * w, h, w, indices[i], seed);
  return out;
}

}  // namespace dl::exp
