#pragma once
// Seeded, stratified train/validation splits. Every class gives round(n_class * val_fraction) of
// its samples to validation, chosen by a Fisher-Yates shuffle of that class's indices with
// dl::Generator (the same numbers on every platform). Both index lists come back sorted.
//
// The split's identity (method, seed, fraction, sizes, FNV-1a hashes of the index lists) is a
// small struct that serialises to JSON, so every run record can say exactly which split it used
// and two runs can be checked to have used the same one.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/tensor.h"

namespace dl::data {

struct SplitIdentity {
  std::string method = "stratified";
  uint64_t seed = 42;
  double val_fraction = 0.1;
  int64_t num_classes = 0;
  int64_t total = 0, train_size = 0, val_size = 0;
  std::string train_hash, val_hash;  // fnv1a64_hex of the sorted index lists

  nlohmann::json to_json() const;
  static SplitIdentity from_json(const nlohmann::json& j);  // throws dl::Error on missing fields
  bool operator==(const SplitIdentity&) const = default;
};

struct Split {
  std::vector<int64_t> train, val;  // indices into the split set, ascending
  SplitIdentity identity;
};

// labels: one class index per sample, each in [0, num_classes). val_fraction in [0, 1).
Split stratified_split(const std::vector<int64_t>& labels, int64_t num_classes, double val_fraction = 0.1,
                       uint64_t seed = 42);
Split stratified_split(const Tensor& labels, int64_t num_classes, double val_fraction = 0.1, uint64_t seed = 42);

// FNV-1a (64-bit) over the indices as 8-byte little-endian integers, as 16 hex digits.
std::string fnv1a64_hex(const std::vector<int64_t>& indices);

}  // namespace dl::data
