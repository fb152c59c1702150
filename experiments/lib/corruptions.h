#pragma once
// A corruption suite for 28x28 grayscale uint8 images (Fashion-MNIST), generated deterministically:
// seven corruptions at five severities each, applied to the raw bytes before a model's own
// transform (so the ResNet path resizes the corrupted image). docs/extended-study.md lists the
// parameter of every severity.
//
// Determinism: image i's random draws (noise field, rotation sign, shift direction, patch centre)
// come from a generator seeded by (seed, corruption, i) only, not by the severity, the batch or
// the other images: the same image gets the same noise pattern at every severity, scaled up, so a
// higher severity changes it more, and a subset (--limit) corrupts its images exactly as the full
// set does.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl::exp {

enum class Corruption { GaussianNoise, Blur, Contrast, Brightness, Rotation, Translation, Occlusion };

struct CorruptionSpec {
  Corruption kind;
  std::string name;        // gaussian_noise, blur, ...
  std::string parameter;   // what the levels are, with units
  std::array<double, 5> levels;  // severity 1..5
};

constexpr int kSeverities = 5;
constexpr uint64_t kCorruptionSeed = 20240607;

// The suite, in report order.
const std::vector<CorruptionSpec>& corruption_suite();
const CorruptionSpec& corruption_spec(Corruption c);

// Severity 0: the image unchanged; 1..5: the suite's levels. `index` is the image's index in its
// data set (it seeds the image's draws). in and out are h*w bytes, row-major, and may not alias.
void corrupt_image(Corruption c, int severity, const uint8_t* in, uint8_t* out, int64_t h, int64_t w, int64_t index,
                   uint64_t seed = kCorruptionSeed);

// images: (N, H, W) uint8; indices[i] is image i's index in its data set (seeds its draws).
// Returns a new (N, H, W) uint8 tensor. Throws dl::Error on a wrong shape, dtype or severity.
Tensor corrupt_images(const Tensor& images, const std::vector<int64_t>& indices, Corruption c, int severity,
                      uint64_t seed = kCorruptionSeed);

}  // namespace dl::exp
