#pragma once
// DataLoader: batches of (images, int64 labels, sample indices) from an in-memory image set,
// with per-epoch seeded shuffling and optional background workers that prefetch batches.
//
// Reproducibility: epoch e shuffles with Generator(seed + e), so a run resumed at epoch e sees the
// same order as the uninterrupted one. Each batch's transform gets its own Generator seeded from
// (seed, epoch, batch index), so batches are identical whatever the number of workers.
//
// Workers: with num_workers > 0, worker threads build batches ahead of the consumer; at most
// num_workers * prefetch_batches batches are in flight or waiting (a bounded queue, so memory
// stays bounded when the model is slower). Batches are delivered in order. An exception thrown
// while building a batch (a transform's dl::Error, say) is re-thrown by next() for that batch with
// its message, after which the epoch is over. start_epoch(), stop() and the destructor stop the
// workers and join them; none of them hangs, even mid-epoch with a full queue.
// Each worker runs its transforms with `threads_per_worker` OpenMP threads (so 4 workers on an
// 8-core machine do not start 4 x 8 threads).
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data/fashion_mnist.h"
#include "data/transforms.h"
#include "tensor/tensor.h"

namespace dl::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  int num_workers = 0;         // 0: batches are built on the calling thread inside next()
  int prefetch_batches = 2;    // per worker
  int threads_per_worker = 1;  // OpenMP threads for a worker's transforms; 0: OpenMP's default
  // Distributed sampling (PyTorch's DistributedSampler): this loader serves rank `rank` of
  // `num_replicas`. Each epoch's order is the one a single loader would use (shuffled with
  // seed + epoch); rank r takes positions r, r + R, r + 2R, ... of it, so the ranks' shards are
  // disjoint and, batch for batch, together hold what one process with R times the batch size
  // would see. When R does not divide the sample count, `tail` says what happens.
  int num_replicas = 1;
  int rank = 0;
  enum class Tail {
    Pad,     // repeat the order's first samples until R divides it (PyTorch's default, drop_last=False)
    Drop,    // drop the order's last samples (PyTorch's drop_last=True)
    Uneven,  // keep every sample once; ranks then differ by one sample (evaluation only: no collective per batch)
  };
  Tail tail = Tail::Pad;
};

// Rank `rank`'s share of `order` (see LoaderOptions::num_replicas); the identity for one replica.
std::vector<int64_t> shard_order(const std::vector<int64_t>& order, int num_replicas, int rank, LoaderOptions::Tail tail);

struct Batch {
  Tensor images;                 // the transform's output (or the raw uint8 samples without one)
  Tensor labels;                 // (B) int64
  std::vector<int64_t> indices;  // (B) positions in the image set
  int64_t epoch = 0, index = 0;  // which epoch, which batch of it
};

class DataLoader {
 public:
  // images: (N, ...) any dtype; labels: (N) integer. `indices` selects and orders the samples to
  // use (e.g. a split's train part); empty means all N. `transform` may be null.
  DataLoader(Tensor images, Tensor labels, std::vector<int64_t> indices, TransformPtr transform, LoaderOptions opts);
  DataLoader(const ImageSet& set, std::vector<int64_t> indices, TransformPtr transform, LoaderOptions opts);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t size() const;  // samples per epoch (this rank's share when num_replicas > 1)
  int64_t num_batches() const;
  const LoaderOptions& options() const { return opts_; }

  // Begins epoch `epoch` (stopping whatever the previous one left running).
  void start_epoch(int64_t epoch);
  // The next batch of the current epoch; nullopt when it is over. Re-throws a worker's exception.
  std::optional<Batch> next();
  // Stops and joins the workers; next() then returns nullopt until the next start_epoch().
  void stop();

  // Builds batch `b` of the epoch whose sample order is `order` (what the workers call).
  Batch make_batch(int64_t epoch, int64_t b, const std::vector<int64_t>& order) const;
  // The sample order of an epoch: the indices, shuffled with Generator(seed + epoch) if shuffle,
  // then this rank's shard of it (shard_order).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  // for (Batch& b : loader.epoch(e)) { ... }: start_epoch(e), then next() until the end.
  class Iterator {
   public:
    Iterator(DataLoader* l, bool end);
    Batch& operator*() { return *cur_; }
    Batch* operator->() { return &*cur_; }
    Iterator& operator++();
    bool operator!=(const Iterator& o) const { return cur_.has_value() != o.cur_.has_value(); }

   private:
    DataLoader* loader_;
    std::optional<Batch> cur_;
  };
  struct EpochRange {
    DataLoader* loader;
    int64_t epoch;
    Iterator begin() {
      loader->start_epoch(epoch);
      return Iterator(loader, false);
    }
    Iterator end() { return Iterator(loader, true); }
  };
  EpochRange epoch(int64_t e) { return {this, e}; }

 private:
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  void worker_loop();

  Tensor images_, labels_;
  std::vector<int64_t> indices_;
  TransformPtr transform_;
  LoaderOptions opts_;
  int64_t sample_bytes_ = 0;

  // current epoch
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
  int64_t batches_ = 0;
  int64_t cursor_ = 0;  // next batch to hand out

  // worker state, guarded by mu_
  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  int64_t next_claim_ = 0;
  bool stopping_ = false;
  std::map<int64_t, Slot> ready_;
  std::vector<std::thread> workers_;
};

}  // namespace dl::data
