// The extended study's training recipes (experiments/lib/recipe.h) and the statistics its report
// uses (experiments/lib/training_report.h): recipe files, the losses a recipe trains with (pair
// costs, distillation, batch mixing) checked against the formulas computed here in double, early
// stopping and per-batch schedules in fit(), and the Student-t interval over seeds.
#include <cmath>
#include <filesystem>

#include "autograd/functional.h"
#include "experiments/lib/recipe.h"
#include "experiments/lib/run_record.h"
#include "experiments/lib/training_report.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"
#include "test_util.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir = fs::temp_directory_path() / "dl_recipe_test";
  TempDir() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
};

// A batch whose "images" are the logits themselves (forward = identity), 4 samples of 10 classes.
data::Batch logits_batch(uint64_t seed, int64_t epoch = 0, int64_t index = 0) {
  manual_seed(seed);
  data::Batch b;
  b.images = randn({4, 10});
  b.labels = from_vector<int64_t>({0, 6, 2, 9}, {4});
  b.indices = {3, 1, 0, 2};
  b.epoch = epoch;
  b.index = index;
  return b;
}

std::vector<double> row_softmax(const std::vector<float>& z, int64_t i, double T = 1) {
  double m = -1e300, s = 0;
  for (int64_t c = 0; c < 10; ++c) m = std::max(m, z[i * 10 + c] / T);
  std::vector<double> p(10);
  for (int64_t c = 0; c < 10; ++c) s += p[c] = std::exp(z[i * 10 + c] / T - m);
  for (auto& v : p) v /= s;
  return p;
}

const ForwardFn identity = [](const Tensor& x) { return x; };

}  // namespace

TEST_CASE("recipe files: round trip, unknown fields and bad combinations are refused") {
  Recipe r = named_recipe("mix");
  CHECK(r.mix == "cutmix");
  CHECK(r.schedule == "cosine");  // mix builds on the cosine row
  CHECK(named_recipe("onecycle").schedule == "onecycle");
  CHECK(named_recipe("crop_flip").flip);
  CHECK(named_recipe("early_stop").early_stop_patience == 3);
  CHECK(Recipe::from_json(r.to_json()).to_json() == r.to_json());
  CHECK(Recipe().is_seed_recipe());
  CHECK(named_recipe("baseline").is_seed_recipe());
  CHECK_FALSE(named_recipe("erasing").is_seed_recipe());
  CHECK_THROWS_WITH_AS(named_recipe("nope"), doctest::Contains("crop_flip"), dl::Error);
  nlohmann::json j = r.to_json();
  j["learning_rate"] = 0.1;
  CHECK_THROWS_WITH_AS(Recipe::from_json(j), doctest::Contains("unknown field 'learning_rate'"), dl::Error);
  j = Recipe().to_json();
  j["weight_decay"] = 0.1;
  CHECK_THROWS_WITH_AS(Recipe::from_json(j), doctest::Contains("needs optimizer adamw"), dl::Error);
  j = r.to_json();
  j["teacher"] = "t.ckpt";
  CHECK_THROWS_WITH_AS(Recipe::from_json(j), doctest::Contains("cannot be combined with mix"), dl::Error);
  j = Recipe().to_json();
  j["schedule"] = "linear";
  CHECK_THROWS_WITH_AS(Recipe::from_json(j), doctest::Contains("schedule 'linear' is not one of"), dl::Error);
  j = Recipe().to_json();
  j["lr"] = "fast";
  CHECK_THROWS_WITH_AS(Recipe::from_json(j), doctest::Contains("wrong type"), dl::Error);

  TempDir t;
  write_json(t.dir / "best.json", {{"row", "cosine"}, {"recipe", named_recipe("cosine").to_json()}});
  RecipeOptions ro;
  ro.file = (t.dir / "best.json").string();
  ro.mix = "none";
  ro.pair_cost = 0.5;
  Recipe got = ro.resolve(1e-3, false);
  CHECK(got.schedule == "cosine");
  CHECK(got.pair_cost == 0.5);
  CHECK(got.name == "cosine+options");
}

TEST_CASE("the pair-cost loss is cross-entropy plus the expected probability on a confused partner") {
  Recipe r;
  r.pair_cost = 0.7;
  r.label_smoothing = 0.1;
  data::Batch b = logits_batch(1);
  b.images.requires_grad_();
  Tensor logits;
  Tensor loss = recipe_loss(r, 10, 42, nullptr)(identity, b, logits);
  loss.backward();
  auto z = b.images.to_vector<float>();
  auto grad = b.images.grad().to_vector<float>();
  std::vector<int64_t> y{0, 6, 2, 9};
  auto m = pair_cost_matrix(r, 10);
  CHECK(m[6][0] == 1.0);
  CHECK(m[0][0] == 0.0);
  CHECK(m[9][0] == 0.0);
  double ce = 0, cost = 0;
  for (int64_t i = 0; i < 4; ++i) {
    auto p = row_softmax(z, i);
    double expected_cost = 0;
    for (int64_t c = 0; c < 10; ++c) expected_cost += p[c] * m[y[i]][c];
    cost += expected_cost / 4;
    for (int64_t c = 0; c < 10; ++c) {
      // label smoothing 0.1 over 10 classes: target 0.9 + 0.01 on the label, 0.01 elsewhere
      const double target = c == y[i] ? 0.91 : 0.01;
      ce -= target * std::log(p[c]) / 4;
      // d/dz_c: (p_c - target_c) / N + pair_cost * p_c (C[y, c] - E[C[y, .]]) / N
      const double g = (p[c] - target) / 4 + 0.7 * p[c] * (m[y[i]][c] - expected_cost) / 4;
      CHECK(grad[i * 10 + c] == doctest::Approx(g).epsilon(1e-4).scale(1e-6));
    }
  }
  CHECK(loss.item<double>() == doctest::Approx(ce + 0.7 * cost).epsilon(1e-5));
  CHECK(cost > 0);
}

TEST_CASE("distillation: (1 - alpha) CE + alpha T^2 KL(teacher_T || student_T), from a teacher file") {
  TempDir t;
  manual_seed(3);
  Teacher teacher;
  teacher.probs = (randn({5, 10}) * 2.0).softmax(1).contiguous();
  teacher.temperature = 3.0;
  teacher.members = {"a", "b"};
  save_teacher(t.dir / "teacher.ckpt", teacher);
  Teacher back = load_teacher(t.dir / "teacher.ckpt", 5, 10);
  CHECK(back.members == teacher.members);
  CHECK(back.probs.to_vector<float>() == teacher.probs.to_vector<float>());
  CHECK_THROWS_WITH_AS(load_teacher(t.dir / "teacher.ckpt", 6, 10), doctest::Contains("expected float32 (6, 10)"), dl::Error);
  CHECK_NOTHROW(load_teacher(t.dir / "teacher.ckpt", 5, 10, {0, 4}));
  {  // a row the student needs but the teacher never computed (another split)
    Teacher partial = teacher;
    partial.probs = teacher.probs.clone();
    partial.probs.data_ptr<float>()[3 * 10 + 2] = NAN;
    save_teacher(t.dir / "partial.ckpt", partial);
    CHECK_NOTHROW(load_teacher(t.dir / "partial.ckpt", 5, 10, {0, 4}));
    CHECK_THROWS_WITH_AS(load_teacher(t.dir / "partial.ckpt", 5, 10, {0, 3}), doctest::Contains("training image 3"),
                         dl::Error);
  }

  Recipe r;
  r.teacher = (t.dir / "teacher.ckpt").string();
  r.distill_alpha = 0.6;
  r.distill_temperature = 3.0;
  data::Batch b = logits_batch(2);
  Tensor logits;
  Tensor loss = recipe_loss(r, 10, 42, &back)(identity, b, logits);
  auto z = b.images.to_vector<float>();
  auto pt = back.probs.to_vector<float>();
  std::vector<int64_t> y{0, 6, 2, 9};
  double ce = 0, kl = 0;
  for (int64_t i = 0; i < 4; ++i) {
    ce -= std::log(row_softmax(z, i)[y[i]]) / 4;
    auto q = row_softmax(z, i, 3.0);
    for (int64_t c = 0; c < 10; ++c) {
      double p = pt[b.indices[i] * 10 + c];  // the teacher row of the sample's image-set index
      kl += p * (std::log(p) - std::log(q[c])) / 4;
    }
  }
  CHECK(loss.item<double>() == doctest::Approx(0.4 * ce + 0.6 * 9.0 * kl).epsilon(1e-5));
  r.distill_temperature = 2.0;
  CHECK_THROWS_WITH_AS(recipe_loss(r, 10, 42, &back), doctest::Contains("temperature 3"), dl::Error);
}

TEST_CASE("batch mixing draws from (seed, epoch, batch): the same batch mixes the same way on a resume") {
  Recipe r = named_recipe("mix");
  r.mix_prob = 1.0;
  r.mix = "mixup";
  auto fn = recipe_loss(r, 10, 7, nullptr);
  // mixing needs image batches: the logits as (4, 10, 1, 1) images, flattened by the "model"
  const ForwardFn flat = [](const Tensor& x) { return x.reshape({x.size(0), 10}); };
  auto images = [](data::Batch b) {
    b.images = b.images.reshape({4, 10, 1, 1});
    return b;
  };
  data::Batch b = images(logits_batch(4, 2, 5));
  Tensor l1, l2, l3;
  double a = fn(flat, b, l1).item<double>();
  double c = fn(flat, b, l2).item<double>();
  CHECK(a == c);
  CHECK(l1.to_vector<float>() == l2.to_vector<float>());
  CHECK(l1.to_vector<float>() != b.images.to_vector<float>());  // mixed
  data::Batch other = images(logits_batch(4, 2, 6));
  fn(flat, other, l3);
  CHECK(l3.to_vector<float>() != l1.to_vector<float>());  // another batch index, another draw
  // mix_prob 0: never mixed, plain (smoothed) cross-entropy
  r.mix_prob = 0;
  Tensor l4;
  double plain = recipe_loss(r, 10, 7, nullptr)(flat, b, l4).item<double>();
  CHECK(l4.to_vector<float>() == b.images.to_vector<float>());
  CHECK(plain == doctest::Approx(cross_entropy(flat(b.images), b.labels, {.label_smoothing = r.label_smoothing}).item<double>()));
}

TEST_CASE("fit: early stopping on validation accuracy, also after a resume, and per-batch schedules") {
  TempDir t;
  manual_seed(0);
  Tensor x = randn({8, 4});
  Tensor y = from_vector<int64_t>({0, 1, 2, 0, 1, 2, 0, 1}, {8});
  std::vector<int64_t> idx{0, 1, 2, 3, 4, 5, 6, 7};
  data::LoaderOptions lo{.batch_size = 4, .shuffle = false};
  data::DataLoader train(x, y, idx, nullptr, lo), val(x, y, idx, nullptr, lo);
  auto model = std::make_shared<nn::Linear>(4, 3);
  auto fwd = [&](const Tensor& v) { return (*model)(v); };
  Logger log(t.dir / "log.txt");
  {
    optim::SGD opt(model->parameters(), {.lr = 1e-12});  // nothing changes: the best epoch stays 1
    FitOptions fo{.epochs = 10, .early_stop_patience = 2};
    FitResult r = fit(*model, fwd, opt, nullptr, train, val, t.dir / "a", fo, log);
    CHECK(r.best_epoch == 1);
    CHECK(r.history.size() == 3);
    CHECK(r.stopped_early == 3);
    fo.resume = true;  // the patience is spent: a resume runs no epoch
    FitResult again = fit(*model, fwd, opt, nullptr, train, val, t.dir / "a", fo, log);
    CHECK(again.history.size() == 3);
    CHECK(again.stopped_early == 3);
  }
  {
    Recipe r;
    r.schedule = "onecycle";
    r.lr = 0.01;
    auto opt = make_optimizer(r, model->parameters());
    const int64_t steps = 3 * train.num_batches();
    auto sched = make_schedule(r, *opt, steps);
    FitOptions fo{.epochs = 3, .scheduler_per_batch = true};
    FitResult res = fit(*model, fwd, *opt, sched.get(), train, val, t.dir / "b", fo, log);
    CHECK(res.history.size() == 3);
    // stepped once per batch, `steps` times in all (one more would throw): it starts at max_lr / 25
    // and warms up during the first epoch
    CHECK(res.history[0].lr == doctest::Approx(0.01 / 25));
    CHECK(res.history[1].lr > res.history[0].lr);
    CHECK_THROWS_AS(sched->step(), dl::Error);
  }
  {
    Recipe r = named_recipe("cosine");
    auto opt = make_optimizer(r, model->parameters());
    CHECK(opt->name() == "AdamW");
    auto sched = make_schedule(r, *opt, 100);
    CHECK(opt->param_groups()[0].lr == doctest::Approx(1e-4));  // warm-up starts at lr / 10
    for (int i = 0; i < 5; ++i) sched->step();
    CHECK(opt->param_groups()[0].lr == doctest::Approx(1e-3));  // 5% of 100 steps of warm-up
    for (int i = 0; i < 95; ++i) sched->step();
    CHECK(opt->param_groups()[0].lr == doctest::Approx(0.0).scale(1e-3));
  }
}

TEST_CASE("seed statistics: mean, sd and the Student-t interval as scipy computes them") {
  // scipy.stats.t.ppf(0.975, df)
  CHECK(t_quantile_975(1) == doctest::Approx(12.706204736).epsilon(1e-4));
  CHECK(t_quantile_975(2) == doctest::Approx(4.302652730).epsilon(1e-4));
  CHECK(t_quantile_975(10) == doctest::Approx(2.228138852).epsilon(1e-4));
  CHECK(t_quantile_975(30) == doctest::Approx(2.042272456).epsilon(1e-4));
  CHECK(t_quantile_975(31) == doctest::Approx(2.039513446).epsilon(1e-4));
  CHECK(t_quantile_975(100) == doctest::Approx(1.983971518).epsilon(1e-4));
  CHECK_THROWS_AS(t_quantile_975(0), dl::Error);
  // numpy: mean, std(ddof=1), mean -+ t.ppf(0.975, 2) * sd / sqrt(3)
  SeedStats s = seed_stats({0.9301, 0.9342, 0.9288});
  CHECK(s.n == 3);
  CHECK(s.mean == doctest::Approx(0.9310333333).epsilon(1e-9));
  CHECK(s.sd == doctest::Approx(0.0028183920).epsilon(1e-6));
  CHECK(s.low == doctest::Approx(0.9240320595).epsilon(1e-6));
  CHECK(s.high == doctest::Approx(0.9380346071).epsilon(1e-6));
  SeedStats one = seed_stats({0.9});
  CHECK(one.sd == 0);
  CHECK(one.low == one.high);
}
