// Data-parallel training, run by ctest under `mpirun -np 2` (tests/CMakeLists.txt, label dist):
// the process group's collectives, the distributed sampler, and DistributedDataParallel against
// one process on the same data order. Every rank computes the one-process reference itself (it is
// deterministic), so the comparison needs no extra communication.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/node.h"
#include "data/loader.h"
#include "dist/ddp.h"
#include "dist/sync_batch_norm.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"
#include "tensor/ops.h"
#include "test_util.h"

using namespace dl;

namespace {

dist::ProcessGroup* group() {
  if (!dist::available()) return nullptr;
  return &dist::ProcessGroup::init();
}

#define NEED_TWO_RANKS(pg)                                                                        \
  auto* pg = group();                                                                             \
  if (!pg) DL_SKIP("built without MPI: " << dist::unavailable_reason());                          \
  if (pg->world_size() != 2) DL_SKIP("needs mpirun -np 2, runs with " << pg->world_size() << " rank(s)")

// A synthetic 10-class data set of 1x8x8 images, the same on every rank.
struct Synthetic {
  Tensor images, labels;
  explicit Synthetic(int64_t n) {
    Generator g(1234);
    images = randn({n, 1, 8, 8}, {}, &g);
    labels = (rand({n}, {}, &g) * 10.0).to(DType::Int64);
  }
};

std::shared_ptr<nn::Module> make_model(bool batch_norm) {
  manual_seed(7);
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Conv2d>(nn::Conv2dConfig{.in_channels = 1, .out_channels = 6, .kernel_size = 3,
                                                             .padding = 1, .bias = !batch_norm}));
  if (batch_norm) m->push_back(std::make_shared<nn::BatchNorm2d>(6));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::MaxPool2d>(nn::IntPair(2)));
  m->push_back(std::make_shared<nn::Conv2d>(nn::Conv2dConfig{.in_channels = 6, .out_channels = 8, .kernel_size = 3,
                                                             .padding = 1, .bias = !batch_norm}));
  if (batch_norm) m->push_back(std::make_shared<nn::BatchNorm2d>(8));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Linear>(8 * 4 * 4, 10));
  return m;
}

data::LoaderOptions loader_opts(int64_t batch, int replicas, int rank) {
  data::LoaderOptions o;
  o.batch_size = batch;
  o.shuffle = true;
  o.seed = 99;
  o.num_replicas = replicas;
  o.rank = rank;
  return o;
}

// `steps` SGD steps (momentum 0.9) on the loader's first batches; returns the state_dict's values.
std::vector<std::vector<float>> train(nn::Module& model, data::DataLoader& loader, int steps) {
  optim::SGD opt(model.parameters(), {.lr = 0.05, .momentum = 0.9});
  model.train();
  int done = 0;
  for (auto& batch : loader.epoch(0)) {
    if (done == steps) break;
    opt.zero_grad();
    cross_entropy(model(batch.images), batch.labels).backward();
    opt.step();
    ++done;
  }
  REQUIRE(done == steps);
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : model.state_dict())
    if (is_floating(t.dtype())) out.push_back(t.contiguous().to_vector<float>());
  return out;
}

double max_abs_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].size() == b[i].size());
    for (size_t k = 0; k < a[i].size(); ++k) m = std::max(m, std::abs(double(a[i][k]) - double(b[i][k])));
  }
  return m;
}

// The largest difference between this rank's values and rank 0's (0 when identical everywhere).
double diff_to_rank0(dist::ProcessGroup& pg, const std::vector<std::vector<float>>& v) {
  double m = 0;
  for (const auto& x : v) {
    Tensor t = from_vector(x, {static_cast<int64_t>(x.size())});
    Tensor all = pg.all_gather(t);
    m = std::max(m, (all.select(0, pg.rank()) - all.select(0, 0)).abs().max().item<double>());
  }
  return m;
}

// Two ranks x batch 32 under DDP against one process x batch 64, 20 steps, same data order.
struct Comparison {
  double vs_single = 0, vs_rank0 = 0;
};
Comparison compare(dist::ProcessGroup& pg, bool batch_norm, bool sync_bn, double bucket_mb) {
  Synthetic d(64 * 20);
  auto single_model = make_model(batch_norm);
  data::DataLoader single_loader(d.images, d.labels, {}, nullptr, loader_opts(64, 1, 0));
  auto reference = train(*single_model, single_loader, 20);

  auto model = make_model(batch_norm);
  if (pg.rank() != 0) {  // a different start on rank 1: DDP must replace it with rank 0's weights
    NoGradGuard ng;
    for (auto& p : model->parameters()) p.add_(1.0);
  }
  if (sync_bn) CHECK(dist::convert_sync_batchnorm(*model, pg) == 2);
  dist::DistributedDataParallel ddp(model, pg, {.bucket_mb = bucket_mb});
  data::DataLoader loader(d.images, d.labels, {}, nullptr, loader_opts(32, 2, pg.rank()));
  auto mine = train(*model, loader, 20);
  return {max_abs_diff(mine, reference), diff_to_rank0(pg, mine)};
}

}  // namespace

TEST_CASE("process group: all-reduce + broadcast + all-gather + barrier") {
  NEED_TWO_RANKS(pg);
  const int r = pg->rank();
  Tensor a = full({5}, r + 1.0);
  pg->allreduce(a, dist::ReduceOp::Sum);
  CHECK(a.to_vector<float>() == std::vector<float>(5, 3.0f));
  Tensor b = full({3}, r + 1.0, DType::Float64);
  pg->allreduce(b, dist::ReduceOp::Average);
  CHECK(b.to_vector<double>() == std::vector<double>(3, 1.5));
  Tensor c = full({2}, 10.0 * r, DType::Int64);
  pg->allreduce(c, dist::ReduceOp::Max);
  CHECK(c.to_vector<int64_t>() == std::vector<int64_t>(2, 10));
  CHECK(pg->allreduce(2.5) == 5.0);

  Tensor d = full({4}, r == 0 ? 7.0 : -1.0);
  pg->broadcast(d, 0);
  CHECK(d.to_vector<float>() == std::vector<float>(4, 7.0f));
  CHECK(pg->broadcast(r == 1 ? std::string("from rank one") : std::string(), 1) == "from rank one");

  Tensor g = pg->all_gather(full({2, 2}, double(r)));
  CHECK(g.sizes() == Shape{2, 2, 2});
  CHECK(g.select(0, 0).sum().item<double>() == 0.0);
  CHECK(g.select(0, 1).sum().item<double>() == 4.0);
  pg->barrier();
  CHECK(pg->local_size() == 2);
  CHECK(pg->local_rank() == r);

  // bad input fails on the rank that passes it, before any communication
  Tensor nc = zeros({4, 4}).transpose(0, 1);
  CHECK_THROWS_WITH_AS(pg->allreduce(nc), doctest::Contains("contiguous"), dl::Error);
  Tensor ints = zeros({2}, DType::Int64);
  CHECK_THROWS_WITH_AS(pg->allreduce(ints, dist::ReduceOp::Average), doctest::Contains("floating"), dl::Error);
  CHECK_THROWS_WITH_AS(pg->broadcast(a, 5), doctest::Contains("root 5"), dl::Error);
}

TEST_CASE("process group: bfloat16 and float16 are broadcast and gathered; a CPU all-reduce refuses them") {
  NEED_TWO_RANKS(pg);
  const int r = pg->rank();
  for (DType dt : {DType::BFloat16, DType::Float16}) {
    INFO(dtype_name(dt));
    Tensor d = full({3}, r == 0 ? 0.1 : -1.0, dt);
    pg->broadcast(d, 0);
    CHECK(d.to_vector<float>() == full({3}, 0.1, dt).to_vector<float>());
    Tensor g = pg->all_gather(full({2}, r + 0.5, dt));
    CHECK(g.dtype() == dt);
    CHECK(g.to_vector<float>() == std::vector<float>{0.5f, 0.5f, 1.5f, 1.5f});
    Tensor s = ones({2}, dt);
    CHECK_THROWS_WITH_AS(pg->allreduce(s, dist::ReduceOp::Sum), doctest::Contains(".to(DType::Float32)"), dl::Error);
  }
}

TEST_CASE("sampler: every sample exactly once per epoch in the one-process order") {
  NEED_TWO_RANKS(pg);
  for (int64_t n : {100, 101}) {
    for (auto tail : {data::LoaderOptions::Tail::Pad, data::LoaderOptions::Tail::Drop,
                      data::LoaderOptions::Tail::Uneven}) {
      Tensor images = zeros({n, 1});
      Tensor labels = zeros({n}, DType::Int64);
      data::LoaderOptions o = loader_opts(8, 2, pg->rank());
      o.tail = tail;
      data::DataLoader loader(images, labels, {}, nullptr, o);
      data::DataLoader single(images, labels, {}, nullptr, loader_opts(8, 1, 0));
      for (int64_t epoch : {0, 3}) {
        std::vector<int64_t> mine;
        for (auto& b : loader.epoch(epoch)) mine.insert(mine.end(), b.indices.begin(), b.indices.end());
        CHECK(static_cast<int64_t>(mine.size()) == loader.size());
        // gather both ranks' orders (padded with -1 to one length)
        Tensor t = full({n}, -1.0, DType::Int64);
        std::copy(mine.begin(), mine.end(), t.data_ptr<int64_t>());
        Tensor all = pg->all_gather(t);
        auto r0 = all.select(0, 0).to_vector<int64_t>(), r1 = all.select(0, 1).to_vector<int64_t>();
        // interleaved, they are the single loader's order (plus padding / minus the dropped tail)
        std::vector<int64_t> joined;
        for (int64_t i = 0; i < n; ++i) {
          if (r0[i] >= 0) joined.push_back(r0[i]);
          if (r1[i] >= 0) joined.push_back(r1[i]);
        }
        std::vector<int64_t> order = single.epoch_order(epoch);
        std::vector<int64_t> counts(static_cast<size_t>(n), 0);
        for (int64_t k : joined) counts[static_cast<size_t>(k)]++;
        INFO("n=" << n << " tail=" << int(tail) << " epoch=" << epoch);
        if (n % 2 == 0 || tail == data::LoaderOptions::Tail::Uneven) {
          CHECK(joined == order);
          CHECK(std::all_of(counts.begin(), counts.end(), [](int64_t c) { return c == 1; }));
        } else if (tail == data::LoaderOptions::Tail::Drop) {
          CHECK(joined == std::vector<int64_t>(order.begin(), order.end() - 1));
        } else {  // Pad: the first sample once more
          std::vector<int64_t> padded = order;
          padded.push_back(order[0]);
          CHECK(joined == padded);
        }
      }
    }
  }
  // a shard of every sample, no rank ever outside the replicas
  CHECK_THROWS_WITH_AS(data::shard_order({1, 2, 3}, 2, 2, data::LoaderOptions::Tail::Pad),
                       doctest::Contains("rank 2 of 2"), dl::Error);
  data::LoaderOptions bad = loader_opts(8, 2, 3);
  CHECK_THROWS_WITH_AS(data::DataLoader(zeros({4, 1}), zeros({4}, DType::Int64), {}, nullptr, bad),
                       doctest::Contains("rank 3 of 2"), dl::Error);
}

TEST_CASE("ddp: 2 ranks x 32 match 1 process x 64 after 20 steps (no batch norm)") {
  NEED_TWO_RANKS(pg);
  // small buckets: several all-reduces per step, started from the hooks during backward
  auto c = compare(*pg, false, false, 0.002);
  MESSAGE("max |ddp - single| = " << c.vs_single << ", max |rank - rank0| = " << c.vs_rank0);
  CHECK(c.vs_rank0 == 0.0);     // the ranks hold bit-identical weights
  CHECK(c.vs_single < 5e-6);    // float32 round-off (sums in another order), not a different computation
  auto one_bucket = compare(*pg, false, false, 25);
  CHECK(one_bucket.vs_rank0 == 0.0);
  CHECK(one_bucket.vs_single < 5e-6);
}

TEST_CASE("ddp: SyncBatchNorm matches 1 process x 64 and plain batch norm does not") {
  NEED_TWO_RANKS(pg);
  auto sync = compare(*pg, true, true, 0.002);
  MESSAGE("SyncBatchNorm: max |ddp - single| = " << sync.vs_single << ", max |rank - rank0| = " << sync.vs_rank0);
  CHECK(sync.vs_single < 5e-6);
  CHECK(sync.vs_rank0 == 0.0);  // parameters and the (global) running statistics agree exactly
  auto plain = compare(*pg, true, false, 0.002);
  MESSAGE("plain BatchNorm2d: max |ddp - single| = " << plain.vs_single);
  CHECK(plain.vs_single > 1e-3);  // per-rank batch statistics: a different computation
}

TEST_CASE("ddp: no_sync accumulates locally and the next backward reduces the sum") {
  NEED_TWO_RANKS(pg);
  Synthetic d(64);
  // reference: the mean gradient of 64 samples, as two accumulated halves of 32 (loss / 2 each)
  auto ref = make_model(false);
  auto idx = [](int64_t from, int64_t n) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    std::iota(v.begin(), v.end(), from);
    return v;
  };
  auto part = [&](int64_t from, int64_t n) {
    Tensor ix = from_vector(idx(from, n), {n});
    return std::make_pair(d.images.index_select(0, ix), d.labels.index_select(0, ix));
  };
  for (int64_t q = 0; q < 4; ++q) {
    auto [x, y] = part(16 * q, 16);
    (cross_entropy((*ref)(x), y) * 0.25).backward();
  }
  auto model = make_model(false);
  dist::DistributedDataParallel ddp(model, *pg, {.bucket_mb = 0.001});
  const int64_t base = 32 * pg->rank();
  {
    auto guard = ddp.no_sync();
    auto [x, y] = part(base, 16);
    (cross_entropy(ddp(x), y) * 0.5).backward();
  }
  CHECK(ddp.stats().steps == 0);
  auto [x, y] = part(base + 16, 16);
  (cross_entropy(ddp(x), y) * 0.5).backward();
  CHECK(ddp.stats().steps == 1);
  auto rp = ref->parameters(), mp = model->parameters();
  double m = 0;
  for (size_t i = 0; i < rp.size(); ++i) m = std::max(m, (rp[i].grad() - mp[i].grad()).abs().max().item<double>());
  MESSAGE("max |grad - reference| = " << m);
  CHECK(m < 1e-6);
}

TEST_CASE("ddp: a parameter unused in forward gets a zero gradient and the others are reduced") {
  NEED_TWO_RANKS(pg);
  manual_seed(3);
  auto m = std::make_shared<nn::Sequential>();
  auto used = m->push_back(std::make_shared<nn::Linear>(4, 3));
  auto unused = m->push_back(std::make_shared<nn::Linear>(4, 3));
  dist::DistributedDataParallel ddp(m, *pg, {.bucket_mb = 1e-5});  // one parameter per bucket
  CHECK(ddp.bucket_layout().size() == 4);
  Tensor x = full({2, 4}, pg->rank() + 1.0);
  (*used)(x).sum().backward();  // `unused` takes no part
  CHECK(unused->weight.grad().abs().sum().item<double>() == 0.0);
  // d(sum)/d(bias) = batch size 2 on each rank; averaged: 2
  CHECK(used->bias.grad().to_vector<float>() == std::vector<float>(3, 2.0f));
  // d/dW = sum of x rows: rank 0 -> 2, rank 1 -> 4; averaged: 3
  CHECK(used->weight.grad().to_vector<float>() == std::vector<float>(12, 3.0f));
}

TEST_CASE("ddp: bad configurations are clear errors") {
  NEED_TWO_RANKS(pg);
  auto m = make_model(false);
  CHECK_THROWS_WITH_AS(dist::DistributedDataParallel(m, *pg, {.bucket_mb = 0}), doctest::Contains("bucket_mb"),
                       dl::Error);
  CHECK_THROWS_WITH_AS(dist::DistributedDataParallel(nullptr, *pg), doctest::Contains("null"), dl::Error);
  auto frozen = make_model(false);
  frozen->requires_grad_(false);
  CHECK_THROWS_WITH_AS(dist::DistributedDataParallel(frozen, *pg), doctest::Contains("no trainable"), dl::Error);
}

TEST_CASE("ddp: a backward that throws midway leaves no stale state, the next backward is averaged") {
  NEED_TWO_RANKS(pg);
  Synthetic d(64);
  auto model = make_model(false);
  dist::DistributedDataParallel ddp(model, *pg, {.bucket_mb = 0.001});
  Tensor ix = from_vector<int64_t>({32 * pg->rank(), 32 * pg->rank() + 1, 32 * pg->rank() + 2}, {3});
  Tensor x = d.images.index_select(0, ix), y = d.labels.index_select(0, ix);  // another shard per rank
  // the input passes through a node whose backward throws: it runs after every parameter's
  // gradient (and so every bucket's hook), before the end-of-backward callback
  Tensor xg = x.detach();
  xg.requires_grad_(true);
  Tensor boom = autograd::record("BoomBackward", ops::clone(xg), {xg},
                                 [](const Tensor&, const autograd::NeedsGrad&) -> std::vector<Tensor> {
                                   fail("boom in backward");
                                 });
  CHECK_THROWS_WITH_AS(cross_entropy(ddp(boom), y).backward(), doctest::Contains("boom"), dl::Error);
  CHECK(ddp.stats().steps == 0);
  model->zero_grad();
  cross_entropy(ddp(x), y).backward();  // a fresh backward: synchronised again
  CHECK(ddp.stats().steps == 1);
  // averaged gradients are the same on both ranks: their sum is twice each rank's own
  for (const auto& p : model->parameters()) {
    Tensor g = p.grad().contiguous().clone();
    Tensor sum = g.clone();
    pg->allreduce(sum, dist::ReduceOp::Sum);
    CHECK_CLOSE(sum, g * 2.0, 1e-6, 1e-7);
  }
}
