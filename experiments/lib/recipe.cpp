#include "experiments/lib/recipe.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/functional.h"
#include "data/transforms.h"
#include "models/checkpoint.h"
#include "nn/optim/adam.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace dl::exp {

namespace {

const std::vector<std::string> kMixes{"none", "mixup", "cutmix"};
const std::vector<std::string> kOptimizers{"adam", "adamw"};
const std::vector<std::string> kSchedules{"constant", "cosine", "onecycle"};

void check_choice(const std::string& what, const std::string& v, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
    fail("recipe: {} '{}' is not one of {}", what, v, fmt::join(allowed, ", "));
}

void validate(const Recipe& r) {
  check_choice("mix", r.mix, kMixes);
  check_choice("optimizer", r.optimizer, kOptimizers);
  check_choice("schedule", r.schedule, kSchedules);
  auto in01 = [](const char* what, double v, bool closed_high) {
    if (!(v >= 0 && (closed_high ? v <= 1 : v < 1))) fail("recipe: {} must be in [0, 1{}, not {}", what, closed_high ? "]" : ")", v);
  };
  in01("erasing", r.erasing, true);
  in01("label_smoothing", r.label_smoothing, false);
  in01("mix_prob", r.mix_prob, true);
  in01("warmup_fraction", r.warmup_fraction, false);
  in01("distill_alpha", r.distill_alpha, true);
  if (r.crop_padding < 0 || r.crop_padding > 14) fail("recipe: crop_padding must be in 0..14, not {}", r.crop_padding);
  if (!(r.lr > 0)) fail("recipe: lr must be positive, not {}", r.lr);
  if (!(r.mix_alpha > 0)) fail("recipe: mix_alpha must be positive, not {}", r.mix_alpha);
  if (!(r.weight_decay >= 0)) fail("recipe: weight_decay must be >= 0, not {}", r.weight_decay);
  if (r.weight_decay > 0 && r.optimizer != "adamw")
    fail("recipe: weight_decay {} needs optimizer adamw (decoupled decay); Adam here has none", r.weight_decay);
  if (r.early_stop_patience < 0) fail("recipe: early_stop_patience must be >= 0, not {}", r.early_stop_patience);
  if (!(r.pair_cost >= 0)) fail("recipe: pair_cost must be >= 0, not {}", r.pair_cost);
  if (!(r.distill_temperature > 0)) fail("recipe: distill_temperature must be positive, not {}", r.distill_temperature);
  if (!r.teacher.empty() && r.mix != "none")
    fail("recipe: distillation reads the teacher's outputs for unmixed images; it cannot be combined with mix '{}'",
         r.mix);
  std::set<int64_t> seen;
  for (int64_t c : r.cost_classes)
    if (c < 0 || !seen.insert(c).second) fail("recipe: cost_classes must be distinct classes, got {}", fmt::join(r.cost_classes, ","));
}

}  // namespace

// One list of the fields: to_json writes them all, from_json reads those present (the rest keep
// the seed recipe's values).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Recipe, name, crop_padding, flip, erasing, label_smoothing, mix, mix_alpha,
                                                mix_prob, optimizer, lr, weight_decay, schedule, warmup_fraction,
                                                early_stop_patience, pair_cost, cost_classes, teacher, distill_alpha,
                                                distill_temperature)

nlohmann::json Recipe::to_json() const { return *this; }

Recipe Recipe::from_json(const nlohmann::json& j) {
  if (!j.is_object()) fail("recipe: expected a JSON object, got {}", j.dump());
  const nlohmann::json known = Recipe().to_json();
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.contains(it.key()))
      fail("recipe: unknown field '{}' (the fields are those of Recipe::to_json: {})", it.key(), known.dump());
  Recipe r;
  try {
    r = j.get<Recipe>();
  } catch (const nlohmann::json::exception& e) {
    fail("recipe: a field has the wrong type ({})", e.what());
  }
  validate(r);
  return r;
}

std::string Recipe::summary() const {
  std::vector<std::string> parts;
  parts.push_back(optimizer == "adamw" ? fmt::format("AdamW lr {:g} wd {:g}", lr, weight_decay)
                                       : fmt::format("Adam lr {:g}", lr));
  if (schedule == "cosine") parts.push_back(fmt::format("cosine, {:g}% warm-up", warmup_fraction * 100));
  if (schedule == "onecycle") parts.push_back("one-cycle");
  if (crop_padding > 0) parts.push_back(fmt::format("crop pad {}", crop_padding));
  if (flip) parts.push_back("flip");
  if (erasing > 0) parts.push_back(fmt::format("erasing p {:g}", erasing));
  if (label_smoothing > 0) parts.push_back(fmt::format("label smoothing {:g}", label_smoothing));
  if (mix != "none") parts.push_back(fmt::format("{} alpha {:g} on {:g}% of batches", mix, mix_alpha, mix_prob * 100));
  if (early_stop_patience > 0) parts.push_back(fmt::format("early stop, patience {}", early_stop_patience));
  if (pair_cost > 0) parts.push_back(fmt::format("pair cost {:g} on classes {}", pair_cost, fmt::join(cost_classes, ",")));
  if (!teacher.empty()) parts.push_back(fmt::format("distilled (alpha {:g}, T {:g})", distill_alpha, distill_temperature));
  return fmt::format("{}", fmt::join(parts, ", "));
}

bool Recipe::is_seed_recipe() const {
  Recipe seed;
  nlohmann::json a = to_json(), b = seed.to_json();
  a.erase("name");
  b.erase("name");
  return a == b;
}

const std::vector<AblationRow>& ablation_rows() {
  static const std::vector<AblationRow> rows = [] {
    std::vector<AblationRow> v;
    Recipe r;
    v.push_back({"baseline", "the seed recipe: Adam 1e-3, constant rate, no augmentation", "", r});
    r.crop_padding = 2;
    r.flip = true;
    v.push_back({"crop_flip", "+ random crop (padding 2) and horizontal flip", "baseline", r});
    r.erasing = 0.5;
    v.push_back({"erasing", "+ random erasing (p 0.5)", "crop_flip", r});
    r.label_smoothing = 0.1;
    v.push_back({"label_smoothing", "+ label smoothing 0.1", "erasing", r});
    r.optimizer = "adamw";
    r.weight_decay = 0.05;
    v.push_back({"adamw", "+ AdamW, weight decay 0.05", "label_smoothing", r});
    Recipe cosine = r;
    cosine.schedule = "cosine";
    cosine.warmup_fraction = 0.05;
    v.push_back({"cosine", "+ cosine schedule with 5% linear warm-up", "adamw", cosine});
    Recipe onecycle = r;
    onecycle.schedule = "onecycle";
    v.push_back({"onecycle", "adamw row + one-cycle schedule (instead of cosine)", "adamw", onecycle});
    Recipe mix = cosine;
    mix.mix = "cutmix";
    v.push_back({"mix", "cosine row + CutMix (alpha 1) on half of the batches", "cosine", mix});
    Recipe stop = mix;
    stop.early_stop_patience = 3;
    v.push_back({"early_stop", "mix row + early stopping on validation accuracy (patience 3 epochs)", "mix", stop});
    for (auto& row : v) row.recipe.name = row.name;
    return v;
  }();
  return rows;
}

Recipe named_recipe(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& row : ablation_rows()) {
    if (row.name == name) return row.recipe;
    names.push_back(row.name);
  }
  fail("--recipe: no recipe named '{}' (the ablation's rows are {})", name, fmt::join(names, ", "));
}

void RecipeOptions::add_to(CLI::App& app) {
  app.add_option("--recipe", name, "a named training recipe, a row of the ablation (docs/extended-study.md)");
  app.add_option("--recipe-file", file, "a recipe as JSON (a Recipe, or an object with a \"recipe\" field)")
      ->excludes("--recipe");
  app.add_option("--pair-cost", pair_cost, "weight of the expected-cost term on the confused garment classes")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--label-smoothing", label_smoothing, "label smoothing (overrides the recipe's)")
      ->check(CLI::Range(0.0, 0.99));
  app.add_option("--mix", mix, "batch mixing (overrides the recipe's): none, mixup or cutmix")
      ->check(CLI::IsMember(kMixes));
  app.add_option("--teacher", teacher, "distil from this teacher file (written by the ensemble program)");
  app.add_option("--distill-alpha", distill_alpha, "weight of the distillation term")->check(CLI::Range(0.0, 1.0));
  app.add_option("--distill-temperature", distill_temperature, "distillation temperature")->check(CLI::PositiveNumber);
}

Recipe RecipeOptions::resolve(double lr, bool lr_given) const {
  Recipe r;
  if (!name.empty()) r = named_recipe(name);
  if (!file.empty()) {
    nlohmann::json j = read_json(file);
    r = Recipe::from_json(j.contains("recipe") ? j.at("recipe") : j);
  }
  bool changed = false;
  auto set = [&changed](auto& field, const auto& value, bool given) {
    if (!given) return;
    changed |= field != value;
    field = value;
  };
  set(r.lr, lr, lr_given);
  set(r.pair_cost, pair_cost, pair_cost >= 0);
  set(r.label_smoothing, label_smoothing, label_smoothing >= 0);
  set(r.mix, mix, !mix.empty());
  set(r.teacher, teacher, !teacher.empty());
  set(r.distill_alpha, distill_alpha, distill_alpha >= 0);
  set(r.distill_temperature, distill_temperature, distill_temperature > 0);
  if (r.teacher.empty() && (distill_alpha >= 0 || distill_temperature > 0))
    fail("--distill-alpha and --distill-temperature need a teacher (--teacher, or a recipe that has one)");
  if (changed) r.name = r.name + "+options";
  validate(r);
  return r;
}

data::TransformPtr training_transform(const Recipe& r, double mean, double stdev) {
  namespace T = data::transforms;
  std::vector<data::TransformPtr> steps{T::ToFloat()};
  if (r.crop_padding > 0) steps.push_back(T::RandomCrop(28, 28, r.crop_padding, 0.0));
  if (r.flip) steps.push_back(T::RandomHorizontalFlip(0.5));
  steps.push_back(T::Normalize({mean}, {stdev}));
  // after normalisation, so the box holds 0: the mean grey level (torchvision's order)
  if (r.erasing > 0) steps.push_back(T::RandomErasing({.p = r.erasing}));
  return T::Compose(std::move(steps));
}

std::unique_ptr<optim::Optimizer> make_optimizer(const Recipe& r, std::vector<Tensor> params) {
  if (r.optimizer == "adamw")
    return std::make_unique<optim::AdamW>(std::move(params), optim::AdamWOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  return std::make_unique<optim::Adam>(std::move(params), optim::AdamOptions{.lr = r.lr});
}

std::unique_ptr<optim::LRScheduler> make_schedule(const Recipe& r, optim::Optimizer& opt, int64_t steps) {
  if (steps < 1) fail("make_schedule: the run has no steps");
  if (r.schedule == "cosine") {
    int64_t warm = std::clamp<int64_t>(static_cast<int64_t>(r.warmup_fraction * static_cast<double>(steps) + 0.5), 0, steps - 1);
    if (warm == 0) return std::make_unique<optim::CosineAnnealingLR>(opt, steps, 0.0);
    // PyTorch: SequentialLR([LinearLR(start_factor=0.1, total_iters=w), CosineAnnealingLR(T_max=steps-w)], [w])
    std::vector<std::unique_ptr<optim::LRScheduler>> parts;
    parts.push_back(std::make_unique<optim::LinearLR>(opt, 0.1, 1.0, warm));
    parts.push_back(std::make_unique<optim::CosineAnnealingLR>(opt, steps - warm, 0.0));
    return std::make_unique<optim::SequentialLR>(opt, std::move(parts), std::vector<int64_t>{warm});
  }
  if (r.schedule == "onecycle") return std::make_unique<optim::OneCycleLR>(opt, std::vector<double>{r.lr}, steps);
  return nullptr;
}

void save_teacher(const std::filesystem::path& file, const Teacher& t) {
  Checkpoint c;
  c.model.emplace_back("probs", t.probs.contiguous());
  c.meta = {{"kind", "teacher"}, {"temperature", t.temperature}, {"members", t.members}};
  save_checkpoint(file.string(), c);
}

Teacher load_teacher(const std::filesystem::path& file, int64_t images, int64_t classes,
                     const std::vector<int64_t>& needed) {
  Checkpoint c = load_checkpoint(file.string());
  const Tensor* probs = find_tensor(c.model, "probs");
  if (c.meta.value("kind", std::string()) != "teacher" || !probs)
    fail("{}: not a teacher file (written by the ensemble program with --teacher-out)", file.string());
  Teacher t;
  t.probs = *probs;
  if (t.probs.dtype() != DType::Float32 || t.probs.dim() != 2 || t.probs.size(0) != images || t.probs.size(1) != classes)
    fail("{}: the teacher's probabilities are {} {}, expected float32 ({}, {})", file.string(), dtype_name(t.probs.dtype()),
         t.probs.shape(), images, classes);
  t.probs = t.probs.contiguous();
  const float* p = t.probs.data_ptr<float>();
  for (int64_t i : needed) {
    if (i < 0 || i >= images) fail("{}: asked for row {} of {}", file.string(), i, images);
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) {
      const float v = p[i * classes + c];
      if (!(v >= 0 && v <= 1)) fail("{}: the teacher has no probabilities for training image {} (it holds {}); it was "
                                    "made for another split", file.string(), i, v);
      sum += v;
    }
    if (std::abs(sum - 1) > 1e-3) fail("{}: row {} sums to {}, not 1", file.string(), i, sum);
  }
  try {
    t.temperature = c.meta.at("temperature").get<double>();
    t.members = c.meta.at("members").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed teacher metadata ({})", file.string(), e.what());
  }
  return t;
}

std::vector<std::vector<double>> pair_cost_matrix(const Recipe& r, int64_t classes) {
  std::vector<std::vector<double>> m(classes, std::vector<double>(classes, 0.0));
  for (int64_t a : r.cost_classes)
    for (int64_t b : r.cost_classes) {
      if (a >= classes || b >= classes) fail("recipe: cost class {} is not below {}", std::max(a, b), classes);
      if (a != b) m[a][b] = 1.0;
    }
  return m;
}

TrainLossFn recipe_loss(const Recipe& r, int64_t classes, uint64_t seed, const Teacher* teacher) {
  if (!r.teacher.empty() && !teacher) fail("recipe_loss: the recipe distils from '{}' but no teacher was loaded", r.teacher);
  if (teacher && std::abs(teacher->temperature - r.distill_temperature) > 1e-12)
    fail("the teacher file holds probabilities at temperature {}, the recipe distils at {}", teacher->temperature,
         r.distill_temperature);
  CrossEntropyOptions ce{.label_smoothing = r.label_smoothing};
  auto cost = pair_cost_matrix(r, classes);
  return [r, ce, cost, classes, seed, teacher](const ForwardFn& forward, const data::Batch& batch, Tensor& logits) {
    Tensor images = batch.images;
    data::MixedBatch mixed;
    bool is_mixed = false;
    if (r.mix != "none") {
      // one generator per (seed, epoch, batch): a resumed run draws what an uninterrupted one does
      Generator g(seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(batch.epoch) << 32) ^
                  static_cast<uint64_t>(batch.index) ^ 0x6d69786d6978ULL);
      if (g.uniform() < r.mix_prob) {
        mixed = r.mix == "mixup" ? data::mixup(images, batch.labels, r.mix_alpha, g)
                                 : data::cutmix(images, batch.labels, r.mix_alpha, g);
        images = mixed.images;
        is_mixed = true;
      }
    }
    logits = forward(images);
    const Device dev = logits.device();
    Tensor loss;
    if (is_mixed)
      loss = cross_entropy(logits, mixed.targets_a.to(dev), ce) * mixed.lambda +
             cross_entropy(logits, mixed.targets_b.to(dev), ce) * (1.0 - mixed.lambda);
    else
      loss = cross_entropy(logits, batch.labels.to(dev), ce);
    if (r.pair_cost > 0) {
      // expected cost: sum_j p_j C[y, j], with y's row (mixed: the rows weighted by lambda)
      const int64_t n = batch.labels.size(0);
      std::vector<float> rows(static_cast<size_t>(n * classes), 0.0f);
      auto a = batch.labels.to_vector<int64_t>();
      std::vector<int64_t> b = is_mixed ? mixed.targets_b.to_vector<int64_t>() : a;
      double lam = is_mixed ? mixed.lambda : 1.0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < classes; ++j)
          rows[i * classes + j] = static_cast<float>(lam * cost[a[i]][j] + (1 - lam) * cost[b[i]][j]);
      Tensor c = from_vector<float>(rows, {n, classes}).to(dev);
      loss = loss + (logits.softmax(1) * c).sum({1}).mean() * r.pair_cost;
    }
    if (teacher) {
      // KL(teacher_T || student_T) * T^2 (Hinton et al., 2015), with the teacher's softened probabilities
      std::vector<int64_t> idx(batch.indices.begin(), batch.indices.end());
      Tensor pt = ops::index_select(teacher->probs, 0, from_vector<int64_t>(idx, {static_cast<int64_t>(idx.size())})).to(dev);
      const double T = r.distill_temperature;
      Tensor log_q = (logits * (1.0 / T)).log_softmax(1);
      Tensor kl = (pt * (pt.clamp(1e-12, 1.0).log() - log_q)).sum({1}).mean();
      loss = loss * (1.0 - r.distill_alpha) + kl * (r.distill_alpha * T * T);
    }
    return loss;
  };
}

}  // namespace dl::exp
