#pragma once
// The study's train/evaluate loop: epochs of batches with an in-place progress line, per-epoch
// train and validation loss/accuracy recorded to history.csv, the best epoch's weights kept,
// and a checkpoint after every epoch so that `--resume` continues from the last completed epoch
// and ends exactly where an uninterrupted run would (the loader's order, the dropout generator,
// the optimizer and the schedule are all restored). SIGINT stops a run after the batch in flight;
// the last completed epoch is already on disk. A non-finite loss stops training with the epoch and
// batch named (or skips the batch, if asked).
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/loader.h"
#include "experiments/lib/run_record.h"
#include "nn/module.h"
#include "nn/optim/grad_scaler.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/optimizer.h"

namespace dl::dist {
class ProcessGroup;
}

namespace dl::exp {

namespace fs = std::filesystem;

// Prints to the terminal and appends to <run>/log.txt. A disabled logger (the ranks other than 0
// of a distributed run) opens nothing and prints nothing.
class Logger {
 public:
  explicit Logger(const fs::path& log_file, bool enabled = true);
  void info(const std::string& line);  // a full line, to stdout and the log
  // A progress line: rewritten in place on a terminal, written every ~10% otherwise; never logged.
  void progress(const std::string& line, bool force = false);
  void end_progress();

 private:
  std::ofstream file_;
  bool enabled_;
  bool tty_;
  bool open_line_ = false;
  double last_print_ = -1;
};

// Set by SIGINT (installed by install_interrupt_handler); the loop stops after the current batch.
std::atomic<bool>& stop_requested();
void install_interrupt_handler();

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t seen = 0;                     // samples evaluated
  std::vector<Prediction> predictions;  // filled when asked
};

using ForwardFn = std::function<Tensor(const Tensor&)>;

// One training batch's loss, when it is more than cross-entropy on the batch (a recipe's label
// smoothing, MixUp/CutMix, distillation, pair costs: experiments/lib/recipe.h). It runs the forward
// pass itself (MixUp changes the images first) and returns the loss; `logits` is set to the model's
// output, scored against batch.labels for the epoch's training accuracy.
using TrainLossFn = std::function<Tensor(const ForwardFn& forward, const data::Batch& batch, Tensor& logits)>;

// Evaluates in eval mode under NoGradGuard; restores the module's previous mode.
EvalResult evaluate(nn::Module& model, const ForwardFn& forward, data::DataLoader& loader, int64_t epoch,
                    bool keep_predictions, Logger* log = nullptr, const std::string& what = "eval");

struct FitOptions {
  int64_t epochs = 10;
  double clip_grad_norm = 0;     // > 0: rescale gradients whose global L2 norm exceeds it
  bool skip_nonfinite = false;   // skip a batch whose loss is NaN/Inf instead of stopping
  bool resume = false;           // continue from <run>/last.ckpt
  nlohmann::json config{};       // stored in checkpoints, checked on resume
  // Distributed (--distributed): this process is one rank of `pg`; the model's gradients are
  // averaged by a dist::DistributedDataParallel the caller made, the loaders are sharded. The ranks
  // agree each batch on stopping (SIGINT) and on a non-finite loss; train and validation metrics
  // are summed over the ranks; only rank 0 writes checkpoints and history.csv. --resume reads
  // last.ckpt on every rank (a folder all ranks see), with any number of ranks.
  dist::ProcessGroup* pg = nullptr;
  // Dynamic loss scaling (optim::GradScaler), set for --precision fp16 (CommonOptions::
  // loss_scaling()): the loss is scaled before backward, the gradients unscaled before clipping
  // and the step, a step whose gradients overflowed is skipped (counted, and said in the epoch's log
  // line) and the scale backs off. The scaler's state is in last.ckpt, so --resume continues it.
  std::optional<optim::GradScalerOptions> loss_scaling = std::nullopt;
  TrainLossFn train_loss{};        // empty: cross_entropy(forward(images), labels)
  bool scheduler_per_batch = false;  // step the scheduler after every optimizer step, not every epoch
  // > 0: stop after an epoch when the best validation accuracy is this many epochs old (the best
  // epoch's weights are in best.ckpt as always). A resumed run applies the same rule to its history.
  int64_t early_stop_patience = 0;
};

struct FitResult {
  std::vector<EpochRecord> history;
  int64_t best_epoch = 0;        // 1-based; its weights are in <run>/best.ckpt
  double best_val_acc = -1;
  bool interrupted = false;
  double seconds = 0;
  int64_t overflow_steps = 0;    // loss scaling: steps skipped for inf/NaN gradients (this call's epochs)
  double loss_scale = 1;         // loss scaling: the scale at the end (1 without)
  int64_t stopped_early = 0;     // early stopping: the last epoch run (0: ran every epoch)
};

// Trains `model` (its trainable parameters are in `optimizer`) with cross-entropy. Writes
// <run>/history.csv, <run>/last.ckpt and <run>/best.ckpt after each epoch.
FitResult fit(nn::Module& model, const ForwardFn& forward, optim::Optimizer& optimizer,
              optim::LRScheduler* scheduler, data::DataLoader& train, data::DataLoader& val, const fs::path& run,
              const FitOptions& options, Logger& log);

// Scales every gradient by max_norm / total_norm when the global L2 norm exceeds max_norm
// (torch.nn.utils.clip_grad_norm_); returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Checks early that a run folder can be written (creates it, writes and removes a probe file).
void check_writable(const fs::path& dir);

// The options a run was started with (`then`, from its checkpoint) that differ now, one line each
// ("key: checkpoint X vs now Y"); keys a resume may change (resume, out, threads, distributed,
// git_commit, machine, ...) are left out. Of the keys `then` lacks (options added since it was
// written), split_seed and recipe are compared with what they were then (its --seed, the seed recipe).
std::vector<std::string> config_differences(const nlohmann::json& then, const nlohmann::json& now);

// Loads <run>/best.ckpt's model weights into `model`.
void load_best_weights(nn::Module& model, const fs::path& run);

// Parses --device and fails clearly when it cannot be used in this build or on this machine.
Device parse_device(const std::string& s);

}  // namespace dl::exp
