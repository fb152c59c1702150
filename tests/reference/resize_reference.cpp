// Bilinear resizing and the ResNet input pipeline against PyTorch (tests/fixtures/make_resize.py):
// F.interpolate(mode="bilinear", align_corners=False, antialias=False) and torchvision's
// ConvertImageDtype -> Resize -> 3 channels -> Normalize.
#include <cmath>

#include "data/transforms.h"
#include "test_util.h"

using namespace dl;

namespace {
void report(const char* what, const Tensor& actual, const Tensor& expected) {
  MaxDiff d = max_difference(actual, expected);
  MESSAGE(fmt::format("{}: largest |diff| {:.3g} (rel {:.3g}) at element {}", what, d.abs_diff, d.rel_diff, d.index));
}
}  // namespace

TEST_CASE("resize_bilinear matches F.interpolate for up-, down- and odd sizes") {
  const char* names[] = {"up_28_224", "up_28_64", "up_odd",         "down_odd",      "down_224_28", "mixed",
                         "same",      "near",     "from_one_pixel", "to_one_pixel", "up_odd_f64"};
  for (const char* name : names) {
    CAPTURE(name);
    Tensor x = test::fixture("resize", fmt::format("{}.x", name));
    Tensor y = test::fixture("resize", fmt::format("{}.y", name));
    Tensor ours = data::resize_bilinear(x, y.size(2), y.size(3));
    CHECK(ours.dtype() == x.dtype());
    report(name, ours, y);
    // inputs are N(0, 1), so outputs are O(1): an absolute 1e-5 is the bound
    CHECK_CLOSE(ours, y, 0.0, 1e-5);
  }
}

TEST_CASE("the fused ResNet input path matches torchvision's pipeline at 224, 64 and 37") {
  Tensor images = test::fixture("resize", "pipeline.images");  // (6, 28, 28) uint8
  REQUIRE(images.dtype() == DType::UInt8);
  for (int64_t size : {224, 64, 37}) {
    CAPTURE(size);
    Tensor expected = test::fixture("resize", fmt::format("pipeline.out{}", size));  // (6, 3, S, S)
    Tensor fused = data::resnet_input(images, size);
    report(fmt::format("fused resnet_input {}", size).c_str(), fused, expected);
    // normalised values reach about +-2.7; 1e-5 absolute is the bound
    CHECK_CLOSE(fused, expected, 0.0, 1e-5);

    Generator gen(1);
    auto composed = data::transforms::Compose({data::transforms::ToFloat(), data::transforms::Resize(size, size),
                                               data::transforms::GrayToRgb(),
                                               data::transforms::Normalize({0.485, 0.456, 0.406}, {0.229, 0.224, 0.225})});
    Tensor step_by_step = composed->apply(images, gen);
    report(fmt::format("composed pipeline {}", size).c_str(), step_by_step, expected);
    CHECK_CLOSE(step_by_step, expected, 0.0, 1e-5);
  }
}
