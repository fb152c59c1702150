// DataLoader: every sample exactly once per epoch (with and without drop_last, with and without
// workers), seeded per-epoch order, identical batches whatever the worker count, clean shutdown on
// early exit (under a watchdog), and worker exceptions re-thrown in the consumer.
#include <atomic>
#include <chrono>
#include <set>

#include "data/loader.h"
#include "data_test_util.h"
#include "tensor/ops.h"
#include "test_util.h"

using namespace dl;
using namespace dl::data;
using namespace std::chrono_literals;

namespace {

// N images (N, 4, 4) uint8 where image i holds i % 256 everywhere, labels i % 10.
ImageSet numbered_set(int64_t n) {
  ImageSet s;
  s.images = empty({n, 4, 4}, DType::UInt8);
  s.labels = empty({n}, DType::Int64);
  for (int64_t i = 0; i < n; ++i) {
    ops::fill_(s.images.select(0, i), static_cast<double>(i % 256));
    s.labels.data_ptr<int64_t>()[i] = i % 10;
  }
  return s;
}

struct EpochResult {
  std::vector<int64_t> order;       // indices in delivery order
  std::vector<int64_t> sizes;       // batch sizes
  std::vector<std::vector<double>> images;  // the batches' pixels
};

EpochResult run_epoch(DataLoader& l, int64_t epoch, const ImageSet& set) {
  EpochResult r;
  int64_t expect_index = 0;
  for (Batch& b : l.epoch(epoch)) {
    CHECK(b.epoch == epoch);
    CHECK(b.index == expect_index++);
    CHECK(b.labels.size(0) == static_cast<int64_t>(b.indices.size()));
    CHECK(b.images.size(0) == static_cast<int64_t>(b.indices.size()));
    for (size_t k = 0; k < b.indices.size(); ++k)
      CHECK(b.labels.data_ptr<int64_t>()[k] == set.labels.data_ptr<int64_t>()[b.indices[k]]);
    r.order.insert(r.order.end(), b.indices.begin(), b.indices.end());
    r.sizes.push_back(static_cast<int64_t>(b.indices.size()));
    r.images.push_back(b.images.to_vector<double>());
  }
  CHECK(expect_index == l.num_batches());
  return r;
}

}  // namespace

TEST_CASE("every sample appears exactly once per epoch, with and without drop_last and workers") {
  ImageSet set = numbered_set(103);
  std::vector<int64_t> subset;  // a split's part: every index but multiples of 7
  for (int64_t i = 0; i < 103; ++i)
    if (i % 7) subset.push_back(i);
  for (int workers : {0, 1, 3}) {
    for (bool drop_last : {false, true}) {
      CAPTURE(workers);
      CAPTURE(drop_last);
      LoaderOptions o;
      o.batch_size = 10;
      o.drop_last = drop_last;
      o.num_workers = workers;
      o.seed = 5;
      DataLoader l(set, subset, transforms::ToFloat(), o);
      CHECK(l.size() == 88);
      CHECK(l.num_batches() == (drop_last ? 8 : 9));
      for (int64_t epoch : {0, 1}) {
        EpochResult r = run_epoch(l, epoch, set);
        std::multiset<int64_t> got(r.order.begin(), r.order.end());
        if (!drop_last) {
          CHECK(std::multiset<int64_t>(subset.begin(), subset.end()) == got);
          CHECK(r.sizes.back() == 8);
        } else {
          CHECK(r.order.size() == 80);
          CHECK(std::set<int64_t>(r.order.begin(), r.order.end()).size() == 80);  // no repeats
          for (int64_t i : r.order) CHECK(i % 7 != 0);
          for (int64_t s : r.sizes) CHECK(s == 10);
        }
        // images are the right samples, converted to float
        for (size_t b = 0; b < r.images.size(); ++b)
          CHECK(r.images[b][0] == doctest::Approx((r.order[b * 10] % 256) / 255.0));
      }
    }
  }
}

TEST_CASE("epoch e shuffles with seed + e: reproducible, different per epoch, unshuffled on request") {
  ImageSet set = numbered_set(50);
  LoaderOptions o;
  o.batch_size = 8;
  o.seed = 100;
  DataLoader a(set, {}, nullptr, o), b(set, {}, nullptr, o);
  auto a0 = run_epoch(a, 0, set).order, a1 = run_epoch(a, 1, set).order;
  CHECK(a0 != a1);
  CHECK(run_epoch(b, 1, set).order == a1);  // a resumed run at epoch 1 sees the same order
  CHECK(a.epoch_order(3) == b.epoch_order(3));
  LoaderOptions o2 = o;
  o2.seed = 99;  // seed 99 at epoch 1 is seed 100 at epoch 0
  DataLoader c(set, {}, nullptr, o2);
  CHECK(run_epoch(c, 1, set).order == a0);
  o.shuffle = false;
  DataLoader d(set, {}, nullptr, o);
  auto ordered = run_epoch(d, 4, set).order;
  CHECK(std::is_sorted(ordered.begin(), ordered.end()));
}

TEST_CASE("batches, random transforms included, are identical with 0 or 4 workers") {
  ImageSet set = numbered_set(64);
  auto t = transforms::Compose({transforms::ToFloat(), transforms::RandomCrop(4, 4, 2), transforms::RandomHorizontalFlip()});
  EpochResult results[2];
  int k = 0;
  for (int workers : {0, 4}) {
    LoaderOptions o;
    o.batch_size = 6;
    o.num_workers = workers;
    o.seed = 3;
    DataLoader l(set, {}, t, o);
    results[k++] = run_epoch(l, 2, set);
  }
  CHECK(results[0].order == results[1].order);
  CHECK(results[0].images == results[1].images);
}

TEST_CASE("destroying the loader after one batch with 2 workers neither hangs nor leaks") {
  ImageSet set = numbered_set(2000);
  std::atomic<int> built{0};
  auto slow = transforms::Lambda("slow", [&built](const Tensor& x, Generator&) {
    std::this_thread::sleep_for(5ms);
    ++built;
    return to_float(x);
  });
  test::within(20s, "destroy a prefetching loader after one batch", [&] {
    LoaderOptions o;
    o.batch_size = 4;
    o.num_workers = 2;
    o.prefetch_batches = 2;
    {
      DataLoader l(set, {}, slow, o);
      l.start_epoch(0);
      auto b = l.next();
      REQUIRE(b.has_value());
      CHECK(b->images.size(0) == 4);
    }  // destructor: stops and joins the workers with a full queue
  });
  // the bounded queue: at most workers * prefetch (+ the ones in hand) were built, not all 500
  CHECK(built.load() <= 2 * 2 + 2 + 1);
  // stopping mid-epoch and starting the next epoch, repeatedly
  test::within(20s, "restart epochs mid-way", [&] {
    LoaderOptions o;
    o.batch_size = 16;
    o.num_workers = 2;
    DataLoader l(set, {}, nullptr, o);
    for (int64_t e = 0; e < 5; ++e) {
      l.start_epoch(e);
      for (int i = 0; i < 3; ++i) CHECK(l.next().has_value());
    }
    l.stop();
    CHECK(!l.next().has_value());
    // a loader never started, or started and never read, also shuts down
    DataLoader idle(set, {}, nullptr, o);
    DataLoader unread(set, {}, nullptr, o);
    unread.start_epoch(0);
  });
}

TEST_CASE("an exception in a worker is re-thrown by next() with its message") {
  ImageSet set = numbered_set(40);
  auto failing = transforms::Lambda("fails on batch 2", [](const Tensor& x, Generator&) {
    if (x.data_ptr<uint8_t>()[0] == 20) fail("transform broke on sample {}", 20);
    return to_float(x);
  });
  for (int workers : {0, 2}) {
    CAPTURE(workers);
    test::within(20s, "worker exception", [&] {
      LoaderOptions o;
      o.batch_size = 10;
      o.shuffle = false;
      o.num_workers = workers;
      DataLoader l(set, {}, failing, o);
      l.start_epoch(0);
      CHECK(l.next().has_value());
      CHECK(l.next().has_value());
      CHECK_ERROR(l.next(), {"transform broke on sample 20"});
      CHECK(!l.next().has_value());  // the epoch is over after an error
      l.start_epoch(1);              // and the loader is usable again
      CHECK(l.next().has_value());
    });
  }
}

TEST_CASE("loader arguments are validated") {
  ImageSet set = numbered_set(10);
  LoaderOptions o;
  CHECK_ERROR(DataLoader(set, {0, 10}, nullptr, o), {"index 10", "10 samples"});
  o.batch_size = 0;
  CHECK_ERROR(DataLoader(set, {}, nullptr, o), {"batch_size"});
  o.batch_size = 4;
  CHECK_ERROR(DataLoader(set.images, set.labels.slice(0, 0, 5), {}, nullptr, o), {"10 images but 5 labels"});
  DataLoader l(set, {}, nullptr, o);
  CHECK_ERROR(l.next(), {"start_epoch"});
}

TEST_CASE("DataLoader: distributed shards (no MPI needed) are disjoint and interleave to the one-loader order") {
  const ImageSet set = numbered_set(103);
  LoaderOptions one;
  one.batch_size = 8;
  one.seed = 5;
  DataLoader single(set, {}, nullptr, one);
  for (int replicas : {2, 3, 4}) {
    for (auto tail : {LoaderOptions::Tail::Pad, LoaderOptions::Tail::Drop, LoaderOptions::Tail::Uneven}) {
      INFO("replicas " << replicas << ", tail " << int(tail));
      std::vector<std::vector<int64_t>> shards;
      int64_t total = 0;
      for (int r = 0; r < replicas; ++r) {
        LoaderOptions o = one;
        o.num_replicas = replicas;
        o.rank = r;
        o.tail = tail;
        DataLoader l(set, {}, nullptr, o);
        std::vector<int64_t> seen;
        for (auto& b : l.epoch(2)) seen.insert(seen.end(), b.indices.begin(), b.indices.end());
        CHECK(static_cast<int64_t>(seen.size()) == l.size());
        total += l.size();
        shards.push_back(seen);
      }
      // interleaving the shards gives back the single loader's order (padded, cut or whole)
      const std::vector<int64_t> order = single.epoch_order(2);
      std::vector<int64_t> joined;
      for (size_t i = 0; i < shards[0].size(); ++i)
        for (int r = 0; r < replicas; ++r)
          if (i < shards[r].size()) joined.push_back(shards[r][i]);
      const int64_t n = 103, R = replicas;
      if (tail == LoaderOptions::Tail::Uneven) {
        CHECK(joined == order);
        CHECK(total == n);
      } else if (tail == LoaderOptions::Tail::Drop) {
        CHECK(joined == std::vector<int64_t>(order.begin(), order.begin() + n / R * R));
      } else {
        std::vector<int64_t> padded = order;
        for (int64_t i = 0; static_cast<int64_t>(padded.size()) % R; ++i) padded.push_back(order[i]);
        CHECK(joined == padded);
        for (const auto& s : shards) CHECK(s.size() == shards[0].size());  // every rank the same number of steps
      }
    }
  }
  LoaderOptions bad = one;
  bad.num_replicas = 2;
  bad.rank = 2;
  CHECK_THROWS_WITH_AS(DataLoader(set, {}, nullptr, bad), doctest::Contains("rank 2 of 2 replicas"), dl::Error);
}
