#pragma once
// Training recipes for the study's scratch CNN (issue 16's ablation, docs/extended-study.md): what
// scratch_cnn does besides "Adam at a constant rate on plain images". A Recipe is plain data, kept
// in config.json ("recipe") and read back from a JSON file (--recipe-file), so a run says exactly
// how it was trained. The default Recipe is the study's seed recipe (the reproduction).
//
// The ablation is a list of named, cumulative rows (each one change added to the previous row);
// `ablation_rows()` is that list, `--recipe NAME` picks one.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "experiments/lib/train.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/optimizer.h"

namespace dl::exp {

struct Recipe {
  std::string name = "baseline";       // the ablation row it came from, or "custom"
  // augmentation (applied per image by the training loader's transform)
  int64_t crop_padding = 0;            // > 0: pad by this, then a random 28x28 crop
  bool flip = false;                   // random horizontal flip, p = 0.5
  double erasing = 0;                  // random erasing probability (torchvision's scale and ratio)
  // loss
  double label_smoothing = 0;
  std::string mix = "none";            // none | mixup | cutmix (batch-level, on a share of the batches)
  double mix_alpha = 1.0;              // Beta(alpha, alpha)
  double mix_prob = 0.5;               // share of the batches that are mixed
  // optimizer and schedule
  std::string optimizer = "adam";      // adam | adamw
  double lr = 1e-3;                    // Adam's rate; the peak rate of a schedule
  double weight_decay = 0;             // AdamW's decoupled decay
  std::string schedule = "constant";   // constant | cosine (linear warm-up, then cosine to 0) | onecycle
  double warmup_fraction = 0;          // cosine: share of all steps spent warming up from lr / 10
  int64_t early_stop_patience = 0;     // > 0: stop when validation accuracy has not improved for this many epochs
  // errors that cost more (the confused upper-body garments)
  double pair_cost = 0;                // > 0: + pair_cost * expected probability on a confused partner class
  std::vector<int64_t> cost_classes = {0, 2, 4, 6};  // T-shirt/top, pullover, coat, shirt
  // knowledge distillation from a teacher's probabilities (ensemble step's teacher file)
  std::string teacher;                 // path of a teacher file; empty: no distillation
  double distill_alpha = 0.7;          // weight of the distillation term
  double distill_temperature = 4.0;    // T: both sides softened by it; the term is scaled by T^2

  nlohmann::json to_json() const;
  static Recipe from_json(const nlohmann::json& j);  // missing fields keep their defaults
  std::string summary() const;                       // one line, for logs and tables
  bool is_seed_recipe() const;                        // nothing beyond the study's seed recipe
};

// The ablation, cumulative: baseline, crop_flip, erasing, label_smoothing, adamw, cosine, onecycle
// (built on adamw: one-cycle instead of cosine), mix (built on cosine), early_stop (built on mix).
struct AblationRow {
  std::string name, change;  // change: what this row adds, in words
  std::string base;          // the row it adds its change to ("" for the first)
  Recipe recipe;
};
const std::vector<AblationRow>& ablation_rows();
Recipe named_recipe(const std::string& name);  // throws naming the rows on an unknown name

// scratch_cnn's recipe options: --recipe NAME, --recipe-file F, and overrides of single fields.
struct RecipeOptions {
  std::string name;      // --recipe
  std::string file;      // --recipe-file (a JSON Recipe, or an object with a "recipe" field)
  double pair_cost = -1, label_smoothing = -1;  // overrides when >= 0
  std::string teacher, mix;
  double distill_alpha = -1, distill_temperature = -1;
  void add_to(CLI::App& app);
  Recipe resolve(double lr, bool lr_given) const;  // the seed recipe when nothing is given
};

// The loader transform for training: ToFloat, the recipe's augmentations, Normalize.
data::TransformPtr training_transform(const Recipe& r, double mean, double stdev);

// The optimizer over `params` and the schedule (null for constant), stepped every batch; `steps` is
// the run's total number of optimizer steps (epochs x batches per epoch).
std::unique_ptr<optim::Optimizer> make_optimizer(const Recipe& r, std::vector<Tensor> params);
std::unique_ptr<optim::LRScheduler> make_schedule(const Recipe& r, optim::Optimizer& opt, int64_t steps);

// A teacher's softened probabilities for a training set (the ensemble step writes them).
struct Teacher {
  Tensor probs;          // (N, classes) float32 over the whole image set, rows by image-set index (NaN: not computed)
  double temperature = 1;
  std::vector<std::string> members;  // the run folders averaged
};
void save_teacher(const std::filesystem::path& file, const Teacher& t);
// Checks the shape and that every row in `needed` (the student's training indices) is a probability row.
Teacher load_teacher(const std::filesystem::path& file, int64_t images, int64_t classes,
                     const std::vector<int64_t>& needed = {});

// fit()'s training loss for this recipe (FitOptions::train_loss); `seed` makes the mixing draws
// a function of (seed, epoch, batch), so a resumed run mixes exactly as an uninterrupted one.
// `teacher` is used when the recipe distils (it must outlive the returned function).
TrainLossFn recipe_loss(const Recipe& r, int64_t classes, uint64_t seed, const Teacher* teacher);

// The cost matrix of pair_cost: 1 between two different classes of cost_classes, 0 elsewhere.
std::vector<std::vector<double>> pair_cost_matrix(const Recipe& r, int64_t classes);

}  // namespace dl::exp
