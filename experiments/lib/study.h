#pragma once
// What the study's training programs share: their common options, the data (Fashion-MNIST, the
// seeded stratified split, optional subsets for --quick runs), the run folder's config.json, and
// the test-set outputs (metrics.json, confusion.csv, predictions.csv).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "data/fashion_mnist.h"
#include "data/split.h"
#include "data/loader.h"
#include "experiments/lib/train.h"

namespace dl::exp {

struct CommonOptions {
  std::string data_dir;        // empty: $DL_DATA_DIR or Debian's folder
  std::string out;             // run folder; empty: runs/<program>-<timestamp>
  std::string device = "cpu";
  uint64_t seed = 42;
  // --split-seed: the seed of the train/validation split and of the --*-limit subsets; unset (-1),
  // it is --seed. Runs that differ only in --seed with one --split-seed share their data exactly.
  int64_t split_seed = -1;
  uint64_t data_seed() const { return split_seed >= 0 ? static_cast<uint64_t>(split_seed) : seed; }
  double val_fraction = 0.1;
  int64_t train_limit = 0;     // > 0: use this many training-split images (quick runs)
  int64_t val_limit = 0;
  int64_t test_limit = 0;
  int64_t batch_size = 64;
  int workers = 1;
  int threads = 0;             // OpenMP threads; 0 = all cores
  bool resume = false;
  double clip_grad_norm = 0;
  bool skip_nonfinite = false;
  // --precision fp32|bf16|fp16: the models' matmuls and convolutions under dl::autocast in that
  // precision (tensor/autocast.h); bf16 on the CPU or CUDA, fp16 on CUDA only.
  std::string precision = "fp32";
  // --distributed (docs/distributed.md): one rank of `mpirun -np N program --distributed ...`;
  // --batch-size is then the global batch, batch_size / N per rank.
  bool distributed = false;
  double bucket_mb = 25;       // DistributedDataParallel's bucket size
  bool sync_bn = false;        // BatchNorm2d -> dist::SyncBatchNorm
  dist::ProcessGroup* pg = nullptr;  // set by prepare_run under --distributed

  // `distributed`: the program supports --distributed (and the options that go with it).
  void add_to(CLI::App& app, bool distributed = false);
  nlohmann::json to_json() const;
  bool is_main() const;        // rank 0, or not distributed: the process that writes files
  // `forward` run under autocast at --precision on `device` (forward itself when fp32). The
  // backward of what it computes keeps that precision (autograd records it per op).
  ForwardFn with_precision(ForwardFn forward, Device device) const;
  // fit()'s loss scaling for this precision: a GradScaler's defaults for fp16 (float16 gradients
  // underflow without it), none for fp32 and bf16 (bfloat16 has float32's exponent range).
  std::optional<optim::GradScalerOptions> loss_scaling() const;
  // A loader's options for this process: under --distributed this rank's shard of every epoch,
  // with batch_size / N samples per batch (training: the shards padded to one length, as
  // PyTorch's DistributedSampler does; evaluation: every sample exactly once).
  data::LoaderOptions shard(data::LoaderOptions lo, bool training) const;
};

struct StudyData {
  data::ImageSet train_set, test_set;  // the official 60,000 / 10,000
  data::Split split;                   // of train_set
  std::vector<int64_t> train_idx, val_idx, test_idx;  // after the limits
  std::string dir;
};

// Rows `idx` (in that order) of a tensor whose first dimension is the image index: an ImageSet's
// images or labels. Contiguous.
Tensor select_rows(const Tensor& t, const std::vector<int64_t>& idx);
// The labels of images `idx` of `s`, as int64 values.
std::vector<int64_t> labels_of(const data::ImageSet& s, const std::vector<int64_t>& idx);

// Loads the data and applies the split and limits (a limited subset keeps every class: it takes
// the first images of a seeded shuffle of the split, so classes stay balanced on average).
StudyData load_study_data(const CommonOptions& o);

// What bfloat16 autocast runs on this CPU: {"cpu", "gemm_bf16" (the GEMM kernel), "direct_convolution_bf16"
// (vdpbf16ps, emulated on AVX2, or none), "bfloat16_instructions" (AVX512_BF16 or AMX)}. config.json holds it
// for --precision bf16 on the CPU.
nlohmann::json cpu_bf16_kernels();

// Applies --threads and --device, creates the run folder, returns it. Under --distributed it
// also starts MPI (dist::ProcessGroup, o.pg); rank 0 creates the folder and tells the others.
// With --precision bf16 on the CPU it says what cpu_bf16_kernels() runs, and whether to expect a speed-up.
std::filesystem::path prepare_run(const std::string& program, CommonOptions& o);

// config.json: every option, the seed, the split identity, data files, git commit, machine.
nlohmann::json base_config(const std::string& program, const CommonOptions& o, const StudyData& d);

std::vector<std::string> class_names();

// Writes metrics.json (model description + test metrics), confusion.csv and predictions.csv.
nlohmann::json write_test_outputs(const std::filesystem::path& run, nlohmann::json description,
                                  const EvalResult& test);

}  // namespace dl::exp
