// Stratified, seeded train/validation splits and their identity.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/fashion_mnist.h"
#include "data/split.h"
#include "data_test_util.h"
#include "test_util.h"

using namespace dl;
using namespace dl::data;

namespace {

// Imbalanced synthetic labels: class c has 50 + 37 * c samples, interleaved.
std::vector<int64_t> synthetic_labels() {
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < 10; ++c)
    for (int64_t k = 0; k < 50 + 37 * c; ++k) labels.push_back(c);
  Generator g(7);
  for (size_t i = labels.size(); i > 1; --i) std::swap(labels[i - 1], labels[g.below(i)]);
  return labels;
}

void check_stratified(const std::vector<int64_t>& labels, const Split& s, double fraction) {
  const size_t n = labels.size();
  // a partition: every index exactly once across train and val, both sorted
  CHECK(s.train.size() + s.val.size() == n);
  CHECK(std::is_sorted(s.train.begin(), s.train.end()));
  CHECK(std::is_sorted(s.val.begin(), s.val.end()));
  std::vector<int> seen(n, 0);
  for (int64_t i : s.train) ++seen[static_cast<size_t>(i)];
  for (int64_t i : s.val) ++seen[static_cast<size_t>(i)];
  CHECK(std::all_of(seen.begin(), seen.end(), [](int k) { return k == 1; }));
  // per class: validation count within +-1 image of fraction * class size
  std::vector<int64_t> per(10, 0), val(10, 0);
  for (int64_t l : labels) ++per[static_cast<size_t>(l)];
  for (int64_t i : s.val) ++val[static_cast<size_t>(labels[static_cast<size_t>(i)])];
  for (size_t c = 0; c < 10; ++c) {
    CAPTURE(c);
    CHECK(std::abs(static_cast<double>(val[c]) - fraction * static_cast<double>(per[c])) <= 1.0);
  }
}

}  // namespace

TEST_CASE("the split is stratified: each class gives its fraction (+-1 image) to validation") {
  auto syn = synthetic_labels();
  Split s = stratified_split(syn, 10, 0.1, 42);
  check_stratified(syn, s, 0.1);
  CHECK(s.identity.train_size == static_cast<int64_t>(s.train.size()));
  CHECK(s.identity.val_size == static_cast<int64_t>(s.val.size()));
  CHECK(s.identity.total == static_cast<int64_t>(syn.size()));
  // another fraction on the imbalanced synthetic labels
  check_stratified(syn, stratified_split(syn, 10, 0.25, 3), 0.25);
}

TEST_CASE("the split of the real 60,000 training labels is stratified (when the data set is installed)") {
  const std::string dir = fashion_mnist_dir();
  DL_SKIP_WITHOUT_FASHION_MNIST(dir, "train-labels-idx1-ubyte");
  // installed but unreadable is a failure, not a reason to fall back to other labels
  ImageSet train = load_fashion_mnist(dir, FashionSplit::Train);
  auto labels = train.labels.to_vector<int64_t>();
  REQUIRE(labels.size() == 60000);
  Split s = stratified_split(labels, 10, 0.1, 42);
  check_stratified(labels, s, 0.1);
  CHECK(s.val.size() == 6000);
  CHECK(s.train.size() == 54000);
}

TEST_CASE("the same seed gives the same split, another seed a different one") {
  auto labels = synthetic_labels();
  Split a = stratified_split(labels, 10, 0.1, 42);
  Split b = stratified_split(labels, 10, 0.1, 42);
  Split c = stratified_split(labels, 10, 0.1, 43);
  CHECK(a.val == b.val);
  CHECK(a.train == b.train);
  CHECK(a.identity == b.identity);
  CHECK(a.val != c.val);
  CHECK(a.identity.val_hash != c.identity.val_hash);
  CHECK(a.identity.val_size == c.identity.val_size);
  // from a tensor of labels too
  Split t = stratified_split(from_vector<int64_t>(labels, {static_cast<int64_t>(labels.size())}), 10, 0.1, 42);
  CHECK(t.val == a.val);
}

TEST_CASE("the split identity serialises to JSON and back") {
  Split s = stratified_split(synthetic_labels(), 10, 0.1, 42);
  nlohmann::json j = s.identity.to_json();
  CHECK(j.at("seed") == 42);
  CHECK(j.at("val_hash").get<std::string>().size() == 16);
  CHECK(j.at("val_hash") == fnv1a64_hex(s.val));
  CHECK(SplitIdentity::from_json(nlohmann::json::parse(j.dump())) == s.identity);
  j.erase("val_hash");
  CHECK_ERROR(SplitIdentity::from_json(j), {"split identity", "val_hash"});
  // FNV-1a of nothing is its offset basis; of {0} a known value
  CHECK(fnv1a64_hex({}) == "cbf29ce484222325");
  CHECK(fnv1a64_hex({1}) != fnv1a64_hex({256}));
}

TEST_CASE("split arguments are validated") {
  CHECK_ERROR(stratified_split(std::vector<int64_t>{0, 1, 12}, 10, 0.1, 1), {"label 12", "sample 2"});
  CHECK_ERROR(stratified_split(std::vector<int64_t>{0, 1}, 10, 1.0, 1), {"val_fraction", "[0, 1)"});
  CHECK_ERROR(stratified_split(std::vector<int64_t>{0, 1}, 10, -0.1, 1), {"val_fraction"});
  Split none = stratified_split(std::vector<int64_t>{0, 1, 1}, 2, 0.0, 1);
  CHECK(none.val.empty());
  CHECK(none.train.size() == 3);
}
