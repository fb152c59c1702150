#include "data/loader.h"

#include <cstring>
#include <system_error>

#include "tensor/ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dl::data {

namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The transform generator's seed for batch b of an epoch: independent of who builds the batch.
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t b) {
  return splitmix(splitmix(splitmix(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(b));
}

}  // namespace

DataLoader::DataLoader(Tensor images, Tensor labels, std::vector<int64_t> indices, TransformPtr transform,
                       LoaderOptions opts)
    : indices_(std::move(indices)), transform_(std::move(transform)), opts_(opts) {
  if (!images.defined() || !images.is_cpu() || images.dim() < 1)
    fail("DataLoader: expected a CPU images tensor (N, ...)");
  if (!labels.defined() || !labels.is_cpu() || labels.dim() != 1 || is_floating(labels.dtype()))
    fail("DataLoader: expected 1-D integer labels on the CPU, got {}",
         labels.defined() ? fmt::format("{} {}", dtype_name(labels.dtype()), shape_str(labels.sizes())) : "none");
  const int64_t n = images.size(0);
  if (labels.size(0) != n) fail("DataLoader: {} images but {} labels", n, labels.size(0));
  if (opts_.batch_size < 1) fail("DataLoader: batch_size must be at least 1, got {}", opts_.batch_size);
  if (opts_.num_workers < 0 || opts_.num_workers > 256)
    fail("DataLoader: num_workers must be 0 to 256, got {}", opts_.num_workers);
  if (opts_.prefetch_batches < 1) fail("DataLoader: prefetch_batches must be at least 1, got {}", opts_.prefetch_batches);
  if (opts_.num_replicas < 1 || opts_.rank < 0 || opts_.rank >= opts_.num_replicas)
    fail("DataLoader: rank {} of {} replicas: expected num_replicas >= 1 and 0 <= rank < num_replicas", opts_.rank,
         opts_.num_replicas);
  if (opts_.threads_per_worker < 0)
    fail("DataLoader: threads_per_worker must be 0 (OpenMP default) or more, got {}", opts_.threads_per_worker);
  if (indices_.empty()) {
    indices_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) indices_[static_cast<size_t>(i)] = i;
  }
  for (size_t i = 0; i < indices_.size(); ++i)
    if (indices_[i] < 0 || indices_[i] >= n)
      fail("DataLoader: index {} (position {}) is outside the {} samples", indices_[i], i, n);
  images_ = ops::contiguous(images);
  labels_ = ops::contiguous(ops::to_dtype(labels, DType::Int64));
  sample_bytes_ = (n ? images_.numel() / n : 0) * images_.element_size();
}

DataLoader::DataLoader(const ImageSet& set, std::vector<int64_t> indices, TransformPtr transform, LoaderOptions opts)
    : DataLoader(set.images, set.labels, std::move(indices), std::move(transform), opts) {}

DataLoader::~DataLoader() { stop(); }

std::vector<int64_t> shard_order(const std::vector<int64_t>& order, int num_replicas, int rank,
                                 LoaderOptions::Tail tail) {
  if (num_replicas < 1 || rank < 0 || rank >= num_replicas)
    fail("shard_order: rank {} of {} replicas is not a valid rank", rank, num_replicas);
  if (num_replicas == 1) return order;
  const int64_t n = static_cast<int64_t>(order.size()), r = num_replicas;
  int64_t total = n;  // the length of the order the ranks share out
  if (tail == LoaderOptions::Tail::Pad) total = (n + r - 1) / r * r;
  if (tail == LoaderOptions::Tail::Drop) total = n / r * r;
  if (tail == LoaderOptions::Tail::Pad && n == 0 && total > 0) fail("shard_order: nothing to pad from");
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(total / r + 1));
  for (int64_t i = rank; i < total; i += r) mine.push_back(order[static_cast<size_t>(i % n)]);  // i >= n: padding
  return mine;
}

int64_t DataLoader::size() const {
  const int64_t n = static_cast<int64_t>(indices_.size()), r = opts_.num_replicas, k = opts_.rank;
  if (r == 1) return n;
  switch (opts_.tail) {
    case LoaderOptions::Tail::Pad: return (n + r - 1) / r;
    case LoaderOptions::Tail::Drop: return n / r;
    case LoaderOptions::Tail::Uneven: return n / r + (k < n % r ? 1 : 0);
  }
  return n;
}

int64_t DataLoader::num_batches() const {
  const int64_t n = size(), bs = opts_.batch_size;
  return opts_.drop_last ? n / bs : (n + bs - 1) / bs;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order = indices_;
  if (opts_.shuffle) {
    Generator gen(opts_.seed + static_cast<uint64_t>(epoch));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[gen.below(i)]);
  }
  return shard_order(order, opts_.num_replicas, opts_.rank, opts_.tail);
}

Batch DataLoader::make_batch(int64_t epoch, int64_t b, const std::vector<int64_t>& order) const {
  const int64_t bs = opts_.batch_size;
  const int64_t begin = b * bs;
  const int64_t count = std::min<int64_t>(bs, static_cast<int64_t>(order.size()) - begin);
  DL_CHECK(begin >= 0 && count > 0, "DataLoader: batch {} is outside the epoch", b);
  Batch batch;
  batch.epoch = epoch;
  batch.index = b;
  batch.indices.assign(order.begin() + begin, order.begin() + begin + count);
  Shape s = images_.sizes();
  s[0] = count;
  Tensor raw = empty(s, images_.dtype());
  batch.labels = empty({count}, DType::Int64);
  const auto* src = static_cast<const char*>(images_.raw_data());
  auto* dst = static_cast<char*>(raw.raw_data());
  const int64_t* lab = labels_.data_ptr<int64_t>();
  int64_t* out_lab = batch.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t k = batch.indices[static_cast<size_t>(i)];
    if (sample_bytes_) std::memcpy(dst + i * sample_bytes_, src + k * sample_bytes_, static_cast<size_t>(sample_bytes_));
    out_lab[i] = lab[k];
  }
  if (transform_) {
    Generator gen(batch_seed(opts_.seed, epoch, b));
    batch.images = transform_->apply(raw, gen);
  } else {
    batch.images = raw;
  }
  return batch;
}

void DataLoader::worker_loop() {
#ifdef _OPENMP
  if (opts_.threads_per_worker > 0) omp_set_num_threads(opts_.threads_per_worker);
#endif
  const int64_t capacity = static_cast<int64_t>(opts_.num_workers) * opts_.prefetch_batches;
  for (;;) {
    int64_t b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || next_claim_ >= batches_ || next_claim_ < cursor_ + capacity; });
      if (stopping_ || next_claim_ >= batches_) return;
      b = next_claim_++;
    }
    Slot slot;
    try {
      slot.batch = make_batch(epoch_, b, order_);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_.emplace(b, std::move(slot));
    }
    ready_cv_.notify_all();
  }
}

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  ready_.clear();
  cursor_ = batches_;
}

void DataLoader::start_epoch(int64_t epoch) {
  if (epoch < 0) fail("DataLoader::start_epoch: epoch must be non-negative, got {}", epoch);
  stop();
  epoch_ = epoch;
  order_ = epoch_order(epoch);
  batches_ = num_batches();
  cursor_ = 0;
  next_claim_ = 0;
  stopping_ = false;
  const int64_t nw = std::min<int64_t>(opts_.num_workers, batches_);
  try {
    for (int64_t i = 0; i < nw; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (const std::system_error& e) {
    stop();
    fail("DataLoader: cannot start worker thread {} of {}: {}", workers_.size() + 1, nw, e.what());
  }
}

std::optional<Batch> DataLoader::next() {
  if (epoch_ < 0) fail("DataLoader::next: call start_epoch(epoch) first");
  if (opts_.num_workers == 0) {
    if (cursor_ >= batches_) return std::nullopt;
    try {
      return make_batch(epoch_, cursor_++, order_);
    } catch (...) {
      cursor_ = batches_;
      throw;
    }
  }
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (cursor_ >= batches_ || workers_.empty()) return std::nullopt;
    ready_cv_.wait(lock, [&] { return ready_.count(cursor_) > 0; });
    auto it = ready_.find(cursor_);
    slot = std::move(it->second);
    ready_.erase(it);
    ++cursor_;
  }
  work_cv_.notify_all();
  if (slot.error) {
    stop();
    std::rethrow_exception(slot.error);
  }
  return std::move(slot.batch);
}

DataLoader::Iterator::Iterator(DataLoader* l, bool end) : loader_(l) {
  if (!end) cur_ = loader_->next();
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  cur_ = loader_->next();
  return *this;
}

}  // namespace dl::data
