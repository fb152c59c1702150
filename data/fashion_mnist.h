#pragma once
// Fashion-MNIST: 70,000 grayscale 28x28 images of ten clothing classes, read from the four IDX
// files of Debian's `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist) or any
// directory holding them (gzipped or not).
//
// Where the data lives, first match wins: an explicit directory (a program's --data-dir), the
// environment variable DL_DATA_DIR, then the Debian directory.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace dl::data {

inline constexpr int64_t kFashionMnistClasses = 10;
inline constexpr std::array<std::string_view, 10> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
inline constexpr const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// A labelled image set held in memory.
struct ImageSet {
  Tensor images;  // (N, H, W) uint8
  Tensor labels;  // (N) int64 in [0, num_classes)
  std::string images_path, labels_path;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

enum class FashionSplit { Train, Test };

// The directory to read: `explicit_dir` when non-empty, else $DL_DATA_DIR when set, else Debian's.
std::string fashion_mnist_dir(const std::optional<std::string>& explicit_dir = std::nullopt);

// The file for a split's images or labels inside `dir`: "<stem>.gz" when it exists, else "<stem>".
// Throws dl::Error (saying how to install the data or use --data-dir) when neither exists.
std::string fashion_mnist_file(const std::string& dir, FashionSplit split, bool labels);

// Loads one split (60,000 train or 10,000 test images), validated: images (N, 28, 28) uint8,
// labels (N) uint8, the same N, every label in [0, 10).
ImageSet load_fashion_mnist(const std::string& dir, FashionSplit split);

// Loads any IDX image/label pair: images (N, H, W) uint8, labels (N) uint8 in [0, num_classes).
// Every error names the file and what was wrong.
ImageSet load_idx_image_set(const std::string& images_path, const std::string& labels_path, int64_t num_classes);

}  // namespace dl::data
