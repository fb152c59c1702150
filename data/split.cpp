#include "data/split.h"

#include <algorithm>
#include <cmath>

#include "tensor/ops.h"

namespace dl::data {

std::string fnv1a64_hex(const std::vector<int64_t>& indices) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t v : indices) {
    auto u = static_cast<uint64_t>(v);
    for (int b = 0; b < 8; ++b) {
      h ^= (u >> (8 * b)) & 0xff;
      h *= 0x100000001b3ULL;
    }
  }
  return fmt::format("{:016x}", h);
}

Split stratified_split(const std::vector<int64_t>& labels, int64_t num_classes, double val_fraction, uint64_t seed) {
  if (num_classes < 1) fail("stratified_split: num_classes must be positive, got {}", num_classes);
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    fail("stratified_split: val_fraction must be in [0, 1), got {}", val_fraction);
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < labels.size(); ++i) {
    int64_t c = labels[i];
    if (c < 0 || c >= num_classes)
      fail("stratified_split: label {} of sample {} is out of range [0, {})", c, i, num_classes);
    by_class[static_cast<size_t>(c)].push_back(static_cast<int64_t>(i));
  }
  Generator gen(seed);
  Split s;
  for (auto& idx : by_class) {
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[gen.below(i)]);
    auto n_val = static_cast<size_t>(std::llround(static_cast<double>(idx.size()) * val_fraction));
    s.val.insert(s.val.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(n_val));
    s.train.insert(s.train.end(), idx.begin() + static_cast<std::ptrdiff_t>(n_val), idx.end());
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  SplitIdentity& id = s.identity;
  id.seed = seed;
  id.val_fraction = val_fraction;
  id.num_classes = num_classes;
  id.total = static_cast<int64_t>(labels.size());
  id.train_size = static_cast<int64_t>(s.train.size());
  id.val_size = static_cast<int64_t>(s.val.size());
  id.train_hash = fnv1a64_hex(s.train);
  id.val_hash = fnv1a64_hex(s.val);
  return s;
}

Split stratified_split(const Tensor& labels, int64_t num_classes, double val_fraction, uint64_t seed) {
  if (!labels.defined() || labels.dim() != 1 || is_floating(labels.dtype()))
    fail("stratified_split: expected a 1-D integer label tensor");
  return stratified_split(ops::contiguous(labels).to_vector<int64_t>(), num_classes, val_fraction, seed);
}

nlohmann::json SplitIdentity::to_json() const {
  return {{"method", method},         {"seed", seed},         {"val_fraction", val_fraction},
          {"num_classes", num_classes}, {"total", total},       {"train_size", train_size},
          {"val_size", val_size},     {"train_hash", train_hash}, {"val_hash", val_hash},
          {"hash_function", "fnv1a64 over sorted int64 little-endian indices"}};
}

SplitIdentity SplitIdentity::from_json(const nlohmann::json& j) {
  SplitIdentity id;
  try {
    id.method = j.at("method").get<std::string>();
    id.seed = j.at("seed").get<uint64_t>();
    id.val_fraction = j.at("val_fraction").get<double>();
    id.num_classes = j.at("num_classes").get<int64_t>();
    id.total = j.at("total").get<int64_t>();
    id.train_size = j.at("train_size").get<int64_t>();
    id.val_size = j.at("val_size").get<int64_t>();
    id.train_hash = j.at("train_hash").get<std::string>();
    id.val_hash = j.at("val_hash").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail("split identity JSON is incomplete or malformed: {}", e.what());
  }
  return id;
}

}  // namespace dl::data
