// The robustness suite's corruptions (experiments/lib/corruptions.h): deterministic, severity 0
// is the identity, each corruption moves an image further from the clean one as the severity
// grows, and each does what its parameter says.
#include <cmath>
#include <set>

#include "data/fashion_mnist.h"
#include "experiments/lib/corruptions.h"
#include "tensor/generator.h"
#include "tensor/ops.h"
#include "test_util.h"
#include "data_test_util.h"

using namespace dl;
using namespace dl::exp;

namespace {

// Garment-like test images: a textured ellipse (grey 60..230) on black, its size and place varying.
Tensor synthetic_images(int64_t n, uint64_t seed = 7) {
  Tensor t = zeros({n, 28, 28}, DType::UInt8);
  uint8_t* p = t.data_ptr<uint8_t>();
  Generator g(seed);
  for (int64_t i = 0; i < n; ++i) {
    double cy = 12 + 4 * g.uniform(), cx = 12 + 4 * g.uniform(), ry = 7 + 5 * g.uniform(), rx = 5 + 5 * g.uniform();
    for (int64_t y = 0; y < 28; ++y)
      for (int64_t x = 0; x < 28; ++x) {
        double d = (y - cy) * (y - cy) / (ry * ry) + (x - cx) * (x - cx) / (rx * rx);
        if (d <= 1) p[i * 784 + y * 28 + x] = static_cast<uint8_t>(60 + g.below(171));
      }
  }
  return t;
}

std::vector<int64_t> iota(int64_t n, int64_t start = 0) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

std::vector<uint8_t> bytes(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::vector<uint8_t>(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
}

double mean_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = bytes(a), y = bytes(b);
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += std::abs(static_cast<int>(x[i]) - static_cast<int>(y[i]));
  return s / static_cast<double>(x.size());
}

// For every corruption: severity 1..5 moves the images strictly further (mean |difference|).
void check_monotone(const Tensor& images, const std::vector<int64_t>& idx) {
  for (const auto& c : corruption_suite()) {
    double prev = 0;
    for (int s = 1; s <= kSeverities; ++s) {
      double d = mean_abs_diff(images, corrupt_images(images, idx, c.kind, s));
      INFO(c.name, " severity ", s, ": mean |difference| ", d, ", severity ", s - 1, ": ", prev);
      CHECK(d > prev);
      prev = d;
    }
  }
}

}  // namespace

TEST_CASE("corruptions: the suite has seven corruptions of five increasing-or-decreasing levels") {
  const auto& suite = corruption_suite();
  REQUIRE(suite.size() == 7);
  std::set<std::string> names;
  for (const auto& c : suite) {
    names.insert(c.name);
    bool up = true, down = true;
    for (int i = 1; i < kSeverities; ++i) {
      up = up && c.levels[i] > c.levels[i - 1];
      down = down && c.levels[i] < c.levels[i - 1];
    }
    CHECK_MESSAGE((c.kind == Corruption::Contrast ? down : up), c.name << "'s levels are not strictly monotone");
    CHECK(&corruption_spec(c.kind) == &c);
  }
  CHECK(names.size() == 7);
}

TEST_CASE("corruptions: the same seed gives the same bytes, another seed other noise") {
  Tensor im = synthetic_images(16);
  auto idx = iota(16);
  for (const auto& c : corruption_suite())
    for (int s = 1; s <= kSeverities; ++s) CHECK_MESSAGE(bytes(corrupt_images(im, idx, c.kind, s)) == bytes(corrupt_images(im, idx, c.kind, s)), c.name << " " << s);
  CHECK(bytes(corrupt_images(im, idx, Corruption::GaussianNoise, 3, 1)) != bytes(corrupt_images(im, idx, Corruption::GaussianNoise, 3, 2)));
  CHECK(bytes(corrupt_images(im, idx, Corruption::Occlusion, 3, 1)) != bytes(corrupt_images(im, idx, Corruption::Occlusion, 3, 2)));
}

TEST_CASE("corruptions: an image is corrupted the same alone or in a batch (its index seeds it)") {
  Tensor im = synthetic_images(12);
  auto idx = iota(12, 100);
  for (const auto& c : corruption_suite()) {
    Tensor all = corrupt_images(im, idx, c.kind, 4);
    for (int64_t i : {0, 5, 11}) {
      Tensor one = corrupt_images(ops::slice(im, 0, i, i + 1, 1).contiguous(), {idx[i]}, c.kind, 4);
      CHECK_MESSAGE(bytes(one) == bytes(ops::slice(all, 0, i, i + 1, 1)), c.name << " image " << i);
    }
  }
}

TEST_CASE("corruptions: severity 0 is the identity, severity 1 already changes the images") {
  Tensor im = synthetic_images(8);
  auto idx = iota(8);
  for (const auto& c : corruption_suite()) {
    CHECK_MESSAGE(bytes(corrupt_images(im, idx, c.kind, 0)) == bytes(im), c.name);
    CHECK_MESSAGE(bytes(corrupt_images(im, idx, c.kind, 1)) != bytes(im), c.name);
  }
}

TEST_CASE("corruptions: a higher severity moves synthetic images further from the clean ones") {
  check_monotone(synthetic_images(64), iota(64));
}

TEST_CASE("corruptions: a higher severity moves Fashion-MNIST test images further from the clean ones") {
  std::string dir = data::fashion_mnist_dir(std::nullopt);
  DL_SKIP_WITHOUT_FASHION_MNIST(dir, "t10k-images-idx3-ubyte");
  data::ImageSet test = data::load_fashion_mnist(dir, data::FashionSplit::Test);
  check_monotone(ops::slice(test.images, 0, 0, 200, 1).contiguous(), iota(200));
}

TEST_CASE("corruptions: each does what its parameter says") {
  const auto& L = [](Corruption c) { return corruption_spec(c).levels; };
  SUBCASE("brightness adds its level, clamped at 255") {
    uint8_t in[4] = {0, 100, 200, 255}, out[4];
    corrupt_image(Corruption::Brightness, 2, in, out, 2, 2, 0);
    for (int i = 0; i < 4; ++i) CHECK(out[i] == std::min(255, static_cast<int>(in[i] + L(Corruption::Brightness)[1])));
  }
  SUBCASE("contrast scales the distance to the image mean") {
    uint8_t in[4] = {0, 100, 100, 200}, out[4];  // mean 100
    corrupt_image(Corruption::Contrast, 5, in, out, 2, 2, 0);
    double f = L(Corruption::Contrast)[4];
    CHECK(out[0] == std::lround(100 - 100 * f));
    CHECK(out[1] == 100);
    CHECK(out[3] == std::lround(100 + 100 * f));
  }
  SUBCASE("gaussian noise on mid-grey has about its standard deviation") {
    std::vector<uint8_t> in(28 * 28, 128), out(in.size());
    for (int s : {1, 5}) {
      double sum = 0, sq = 0;
      for (int64_t k = 0; k < 20; ++k) {
        corrupt_image(Corruption::GaussianNoise, s, in.data(), out.data(), 28, 28, k);
        for (uint8_t v : out) {
          sum += v - 128.0;
          sq += (v - 128.0) * (v - 128.0);
        }
      }
      double n = 20.0 * 784, sd = std::sqrt(sq / n - (sum / n) * (sum / n)), want = L(Corruption::GaussianNoise)[s - 1];
      // clipping at 0 and 255 trims the tails a little at sigma 70
      CHECK(sd == doctest::Approx(want).epsilon(s == 5 ? 0.08 : 0.03));
    }
  }
  SUBCASE("translation moves pixels without changing them, occlusion's squares grow nested") {
    Tensor im = synthetic_images(1, 3);
    const uint8_t* src = im.data_ptr<uint8_t>();
    std::vector<uint8_t> out(784);
    corrupt_image(Corruption::Translation, 1, src, out.data(), 28, 28, 0);
    std::multiset<int> in_values(src, src + 784), out_values(out.begin(), out.end());
    std::multiset<int> nonzero_in, nonzero_out;
    for (int v : in_values) if (v) nonzero_in.insert(v);
    for (int v : out_values) if (v) nonzero_out.insert(v);
    CHECK(nonzero_out.size() <= nonzero_in.size());  // some may leave the frame
    for (int v : nonzero_out) CHECK(nonzero_in.count(v) > 0);
    std::vector<uint8_t> white(784, 255), prev(784, 255);
    for (int s = 1; s <= kSeverities; ++s) {
      corrupt_image(Corruption::Occlusion, s, white.data(), out.data(), 28, 28, 9);
      int64_t black = 0;
      bool nested = true;
      for (int i = 0; i < 784; ++i) {
        black += out[i] == 0;
        nested = nested && !(prev[i] == 0 && out[i] != 0);
      }
      int64_t side = static_cast<int64_t>(L(Corruption::Occlusion)[s - 1]);
      CHECK(black <= side * side);
      CHECK(black >= (side / 2) * (side / 2));  // clipped at most on two sides by the centre's range
      CHECK(nested);
      prev = out;
    }
  }
  SUBCASE("a rotation by its angle keeps a centred disc's pixels") {
    std::vector<uint8_t> disc(784, 0), out(784);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x)
        if ((y - 13.5) * (y - 13.5) + (x - 13.5) * (x - 13.5) <= 64) disc[y * 28 + x] = 200;
    corrupt_image(Corruption::Rotation, 5, disc.data(), out.data(), 28, 28, 4);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x)
        if ((y - 13.5) * (y - 13.5) + (x - 13.5) * (x - 13.5) <= 36) CHECK(out[y * 28 + x] == 200);
  }
}

TEST_CASE("corruptions: bad inputs are refused with a message") {
  Tensor im = synthetic_images(2);
  CHECK_ERROR(corrupt_images(im, {0, 1}, Corruption::Blur, 6), {"severity 6"});
  CHECK_ERROR(corrupt_images(im, {0}, Corruption::Blur, 1), {"2 images", "1 indices"});
  CHECK_ERROR(corrupt_images(im.to(DType::Float32), {0, 1}, Corruption::Blur, 1), {"uint8"});
}
