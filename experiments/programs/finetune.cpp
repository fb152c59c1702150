// finetune: the study's ImageNet-pretrained ResNet18 fine-tuned beyond the frozen head, by
// progressive unfreezing with discriminative learning rates (issue 16).
//
//   stage 1: the new 512->10 head only (backbone frozen)
//   stage 2: + layer4
//   stage 3: + layer3
//
// Each stage is a fit() of its own (a fresh Adam/AdamW, state not carried over) into stage<k>/,
// starting from the previous stage's best.ckpt (best validation accuracy). The parameter groups
// carry discriminative rates: head lr, layer4 lr*decay, layer3 lr*decay^2. Batch norm of the
// frozen parts runs in eval mode (running statistics, nothing updated); an unfrozen block's batch
// norm trains. The whole network runs every step (features cannot be cached once layers train).
// A finished stage has stage<k>/done.json; --resume skips it, and a --resume of a finished run
// (every stage done, metrics.json written) does nothing. The top-level run folder is like every
// model's: config.json, history.csv (all stages; extra columns stage, stage_epoch, lr_layer4,
// lr_layer3), best.ckpt (the final model's whole state dict), last.ckpt, metrics.json,
// confusion.csv, predictions.csv.
//
//   build/bin/finetune [--weights weights/resnet18-f37072fd.pth] [--image-size 224]
//                      [--stage-epochs 2,2,2] [--lr 1e-3] [--lr-decay 0.3] [--optimizer adam|adamw]
//                      [--weight-decay W] [--estimate] [--out DIR] [common options]
#include <fmt/ranges.h>
#include <omp.h>

#include <iostream>

#include "autograd/node.h"
#include "data/transforms.h"
#include "autograd/functional.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/transfer.h"
#include "models/checkpoint.h"
#include "nn/optim/adam.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

namespace {

// ResNet18 (same modules and state-dict keys) whose train() leaves the frozen parts' batch norm
// in eval mode: fit() calls train() every epoch.
class StagedResNet18 : public models::ResNet18 {
 public:
  using models::ResNet18::ResNet18;
  int stage = 1;  // 1: head, 2: + layer4, 3: + layer3

  void train(bool on = true) override {
    models::ResNet18::train(on);
    if (!on) return;
    for (const auto& m : std::vector<std::shared_ptr<nn::Module>>{bn1, layer1, layer2, layer3, layer4})
      m->eval();
    if (stage >= 2) layer4->train(true);
    if (stage >= 3) layer3->train(true);
  }

  // requires_grad on the stage's trainable parts only
  void set_stage(int s) {
    stage = s;
    requires_grad_(false);
    fc->requires_grad_(true);
    if (s >= 2) layer4->requires_grad_(true);
    if (s >= 3) layer3->requires_grad_(true);
  }
};

const char* kGroupNames[] = {"fc", "layer4", "layer3"};

struct GroupPlan {
  std::string name;
  double lr = 0;
};

std::vector<GroupPlan> stage_groups(int stage, double lr, double decay) {
  std::vector<GroupPlan> g;
  double r = lr;
  for (int i = 0; i < stage; ++i, r *= decay) g.push_back({kGroupNames[i], r});
  return g;
}

std::vector<Tensor> group_params(StagedResNet18& m, const std::string& name) {
  if (name == "fc") return m.fc->parameters();
  if (name == "layer4") return m.layer4->parameters();
  return m.layer3->parameters();
}

std::unique_ptr<optim::Optimizer> make_optimizer(StagedResNet18& m, const std::vector<GroupPlan>& plan,
                                                 const std::string& kind, double weight_decay) {
  std::vector<optim::ParamGroupSpec> specs;
  for (const auto& g : plan) specs.push_back({group_params(m, g.name), {.lr = g.lr}});
  if (kind == "adamw")
    return std::make_unique<optim::AdamW>(specs, optim::AdamWOptions{.lr = plan[0].lr, .weight_decay = weight_decay});
  return std::make_unique<optim::Adam>(specs, optim::AdamOptions{.lr = plan[0].lr, .weight_decay = weight_decay});
}

// A stage's done.json, or null when the stage has to run.
nlohmann::json finished_stage(const fs::path& sub, const nlohmann::json& config) {
  fs::path done = sub / "done.json";
  if (!fs::exists(done) || !fs::exists(sub / "best.ckpt") || !fs::exists(sub / "history.csv")) return nullptr;
  nlohmann::json j = read_json(done);
  nlohmann::json then = j.value("config", nlohmann::json::object()), now = config;
  then.erase("started");
  if (auto diffs = config_differences(then, now); !diffs.empty()) {
    fail("--resume: {} was written with other options:\n  {}\nstart a new run folder or use the same options",
         done.string(), fmt::join(diffs, "\n  "));
  }
  return j;
}

std::string history_csv(const std::vector<std::vector<EpochRecord>>& stages,
                        const std::vector<std::vector<GroupPlan>>& plans) {
  std::string s = "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,stage,stage_epoch,lr_layer4,lr_layer3\n";
  int64_t epoch = 0;
  for (size_t k = 0; k < stages.size(); ++k)
    for (const auto& r : stages[k]) {
      auto lr_of = [&](size_t i) { return i < plans[k].size() ? plans[k][i].lr : 0.0; };
      s += fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.8g},{:.3f},{},{},{:.8g},{:.8g}\n", ++epoch, r.train_loss,
                       r.train_acc, r.val_loss, r.val_acc, r.lr, r.seconds, k + 1, r.epoch, lr_of(1), lr_of(2));
    }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"finetune: ResNet18 fine-tuned by progressive unfreezing with discriminative learning rates"};
  CommonOptions o;
  TransferOptions t;
  o.add_to(app);
  t.add_to(app);
  std::vector<int64_t> stage_epochs{2, 2, 2};
  double lr = 1e-3, lr_decay = 0.3;
  std::string optimizer = "adam";
  double weight_decay = -1;  // unset: the optimizer's default
  bool estimate = false;
  app.add_option("--stage-epochs", stage_epochs, "epochs of stage 1 (head), 2 (+ layer4), 3 (+ layer3); 1 to 3 stages")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "the head's learning rate")->check(CLI::PositiveNumber);
  app.add_option("--lr-decay", lr_decay, "layer4 learns at lr*decay, layer3 at lr*decay^2")
      ->check(CLI::Range(1e-6, 1.0));
  app.add_option("--optimizer", optimizer, "adam (L2 weight decay) or adamw (decoupled)")
      ->check(CLI::IsMember({"adam", "adamw"}));
  app.add_option("--weight-decay", weight_decay, "default 0 for adam, 0.01 for adamw")->check(CLI::NonNegativeNumber);
  app.add_flag("--estimate", estimate, "time a training batch of each stage and print the expected duration; write nothing");
  CLI11_PARSE(app, argc, argv);
  try {
    if (stage_epochs.empty() || stage_epochs.size() > 3) fail("--stage-epochs takes 1 to 3 values, got {}", stage_epochs.size());
    const int stages = static_cast<int>(stage_epochs.size());
    const double wd = weight_decay >= 0 ? weight_decay : optimizer == "adamw" ? 1e-2 : 0.0;
    require_weights(t.weights);
    install_interrupt_handler();

    data::LoaderOptions lo{.batch_size = o.batch_size, .shuffle = true, .drop_last = false, .seed = o.seed,
                           .num_workers = o.workers};
    data::LoaderOptions eo = lo;
    eo.shuffle = false;
    auto transform = data::transforms::ResnetInput(t.image_size);

    if (estimate) {
      if (o.threads > 0) omp_set_num_threads(o.threads);
      Device device = parse_device(o.device);
      StudyData d = load_study_data(o);
      manual_seed(o.seed);
      StagedResNet18 model(data::kFashionMnistClasses);
      models::load_resnet18_weights(model, t.weights);
      model.to(device);
      data::DataLoader train(d.train_set, d.train_idx, transform, lo);
      ForwardFn forward = o.with_precision([&](const Tensor& x) { return model(x.to(device)); }, device);
      data::Batch batch = train.make_batch(0, 0, train.epoch_order(0));
      const int64_t nb = train.num_batches();
      const int64_t eval_images = static_cast<int64_t>(d.val_idx.size()) * stages + static_cast<int64_t>(d.test_idx.size());
      double total = 0, eval_per_image = 0;
      {
        model.eval();
        NoGradGuard ng;
        forward(batch.images);  // warm-up
        auto t0 = std::chrono::steady_clock::now();
        forward(batch.images);
        eval_per_image = seconds_since(t0) / batch.images.size(0);
      }
      for (int s = 1; s <= stages; ++s) {
        model.set_stage(s);
        model.train();
        auto t0 = std::chrono::steady_clock::now();
        Tensor loss = cross_entropy(forward(batch.images), batch.labels.to(device));
        loss.backward();
        model.zero_grad();
        double per_batch = seconds_since(t0);
        total += per_batch * nb * stage_epochs[s - 1];
        std::cout << fmt::format("finetune estimate: stage {}: {:.2f} s per training batch of {} at {}x{} -> {} "
                                 "batches x {} epochs ~ {:.0f} s\n",
                                 s, per_batch, batch.images.size(0), t.image_size, t.image_size, nb,
                                 stage_epochs[s - 1], per_batch * nb * stage_epochs[s - 1]);
      }
      total += eval_per_image * eval_images;
      std::cout << fmt::format("finetune estimate: validation and test passes ~ {:.0f} s; in all ~ {:.0f} s ({:.1f} min)\n",
                               eval_per_image * eval_images, total, total / 60);
      return 0;
    }

    auto run = prepare_run("finetune", o);
    Logger log(run / "log.txt");
    StudyData d = load_study_data(o);
    Device device = parse_device(o.device);

    FeatureSet ids;  // only the weights' identity is used (transfer_config, transfer_description)
    ids.identity = models::identify_weights(t.weights, t.stand_in_weights);
    ids.weights_sha256 = ids.identity.file_sha256;
    log.info(fmt::format("weights '{}': {}; {}", t.weights, ids.identity.label(), ids.identity.how));

    std::vector<std::vector<GroupPlan>> plans;
    for (int s = 1; s <= stages; ++s) plans.push_back(stage_groups(s, lr, lr_decay));
    int64_t total_epochs = 0;
    for (auto e : stage_epochs) total_epochs += e;

    nlohmann::json config = transfer_config("finetune", o, d, t, ids, total_epochs);
    config["optimizer"] = optimizer == "adamw" ? "AdamW" : "Adam";
    config["weight_decay"] = wd;
    config["lr"] = lr;
    config["lr_decay"] = lr_decay;
    config["stage_epochs"] = stage_epochs;
    config["batch_norm"] = "frozen parts in eval mode (running statistics, not updated); unfrozen blocks' batch norm trains";
    config["stages"] = nlohmann::json::array();
    for (int s = 1; s <= stages; ++s) {
      nlohmann::json groups = nlohmann::json::array();
      for (const auto& g : plans[s - 1]) groups.push_back({{"name", g.name}, {"lr", g.lr}});
      config["stages"].push_back(
          {{"stage", s},
           {"folder", fmt::format("stage{}", s)},
           {"epochs", stage_epochs[s - 1]},
           {"param_groups", groups},
           {"starts_from", s == 1 ? std::string("the weights file's backbone and a new seeded 512->10 head")
                                  : fmt::format("stage{}/best.ckpt (its best validation epoch)", s - 1)}});
    }

    auto stage_config = [&](int s) {
      nlohmann::json c = config;
      c.erase("started");
      c["stage"] = s;
      return c;
    };

    // --resume: a finished stage written with other options is refused before anything is
    // written; a finished run (every stage done, the outputs written) is left as it is.
    if (o.resume) {
      bool all = true;
      for (int s = 1; s <= stages; ++s)
        if (finished_stage(run / fmt::format("stage{}", s), stage_config(s)).is_null()) all = false;
      if (all && fs::exists(run / "metrics.json") && fs::exists(run / "best.ckpt")) {
        log.info(fmt::format("--resume: all {} stages are done and {} exists; nothing to do", stages,
                             (run / "metrics.json").string()));
        return 0;
      }
    }
    write_json(run / "config.json", config);
    if (!o.resume)
      for (const char* f : {"metrics.json", "confusion.csv", "predictions.csv"}) fs::remove(run / f);

    manual_seed(o.seed);  // the new head's initial weights
    StagedResNet18 model(data::kFashionMnistClasses);
    std::string load_note = models::load_resnet18_weights(model, t.weights);
    log.info(load_note);
    model.to(device);
    const int64_t total_params = model.num_parameters();

    data::DataLoader train(d.train_set, d.train_idx, transform, lo);
    data::DataLoader val(d.train_set, d.val_idx, transform, eo);
    data::DataLoader test(d.test_set, d.test_idx, transform, eo);
    ForwardFn forward = o.with_precision([&](const Tensor& x) { return model(x.to(device)); }, device);
    log.info(fmt::format("finetune: {} stages ({} epochs), {} train / {} val / {} test images at {}x{}; run folder {}",
                         stages, total_epochs, d.train_idx.size(), d.val_idx.size(), d.test_idx.size(), t.image_size,
                         t.image_size, run.string()));

    std::vector<std::vector<EpochRecord>> histories;
    FitResult last_fit;
    nlohmann::json stage_summaries = nlohmann::json::array();
    double train_seconds = 0;
    for (int s = 1; s <= stages; ++s) {
      fs::path sub = run / fmt::format("stage{}", s);
      nlohmann::json sc = stage_config(s);
      model.set_stage(s);
      std::string groups_text;
      for (const auto& g : plans[s - 1]) groups_text += fmt::format(" {} at lr {:g};", g.name, g.lr);
      nlohmann::json done = o.resume ? finished_stage(sub, sc) : nlohmann::json();
      FitResult r;
      if (!done.is_null()) {
        r.history = read_history(sub / "history.csv");
        r.best_epoch = done.at("best_epoch").get<int64_t>();
        r.best_val_acc = done.at("best_val_acc").get<double>();
        r.seconds = done.at("seconds").get<double>();
        log.info(fmt::format("stage {}: done earlier ({}): skipped", s, (sub / "done.json").string()));
      } else {
        fs::remove(sub / "done.json");
        if (s > 1) {
          load_best_weights(model, run / fmt::format("stage{}", s - 1));
          log.info(fmt::format("stage {} starts from stage{}/best.ckpt (epoch {}, validation accuracy {:.4f})", s,
                               s - 1, last_fit.best_epoch, last_fit.best_val_acc));
        }
        log.info(fmt::format("stage {}/{}: {} epochs; trainable:{} {} of {} parameters; other batch norm in eval mode",
                             s, stages, stage_epochs[s - 1], groups_text, model.num_parameters(true), total_params));
        auto opt = make_optimizer(model, plans[s - 1], optimizer, wd);
        FitOptions fo{.epochs = stage_epochs[s - 1], .clip_grad_norm = o.clip_grad_norm,
                      .skip_nonfinite = o.skip_nonfinite, .resume = o.resume, .config = sc};
        fo.loss_scaling = o.loss_scaling();
        r = fit(model, forward, *opt, nullptr, train, val, sub, fo, log);
        if (r.interrupted) return 130;
        write_json(sub / "done.json", {{"stage", s},
                                       {"best_epoch", r.best_epoch},
                                       {"best_val_acc", r.best_val_acc},
                                       {"seconds", r.seconds},
                                       {"finished", timestamp()},
                                       {"config", sc}});
      }
      histories.push_back(r.history);
      train_seconds += r.seconds;
      stage_summaries.push_back({{"stage", s},
                                 {"epochs", stage_epochs[s - 1]},
                                 {"best_epoch", r.best_epoch},
                                 {"best_val_acc", r.best_val_acc},
                                 {"seconds", r.seconds}});
      last_fit = r;
    }

    fs::path final_stage = run / fmt::format("stage{}", stages);
    load_best_weights(model, final_stage);
    fs::copy_file(final_stage / "best.ckpt", run / "best.ckpt", fs::copy_options::overwrite_existing);
    fs::copy_file(final_stage / "last.ckpt", run / "last.ckpt", fs::copy_options::overwrite_existing);
    write_text_atomic(run / "history.csv", history_csv(histories, plans));
    EvalResult te = evaluate(model, forward, test, 0, true, &log, "test");

    int64_t best_global = last_fit.best_epoch;
    for (int s = 1; s < stages; ++s) best_global += stage_epochs[s - 1];
    FitResult summary = last_fit;
    summary.best_epoch = best_global;
    summary.seconds = train_seconds;
    nlohmann::json desc = transfer_description("finetune", "ResNet18 fine-tuned (progressive unfreezing)", t, ids, lr,
                                               total_epochs, summary);
    for (const char* k : {"feature_cache", "feature_seconds", "features_from_cache"}) desc.erase(k);
    std::string unfrozen = stages == 1 ? "the head" : stages == 2 ? "the head, then layer4" : "the head, then layer4, then layer3";
    desc["training_strategy"] = fmt::format(
        "progressive unfreezing ({}), {} epochs per stage, {} with discriminative learning rates (layer4 lr*{:g}, "
        "layer3 lr*{:g}^2); frozen parts' batch norm in eval mode; the whole network runs every step",
        unfrozen, fmt::join(stage_epochs, "/"), config["optimizer"].get<std::string>(), lr_decay, lr_decay);
    desc["weights_load"] = load_note;
    desc["params_trained"] = model.num_parameters(true);  // the last stage's
    desc["optimizer"] = config["optimizer"];
    desc["weight_decay"] = wd;
    desc["lr_decay"] = lr_decay;
    desc["stage_epochs"] = stage_epochs;
    desc["stages"] = stage_summaries;
    desc["param_groups"] = config["stages"].back()["param_groups"];
    desc["best_epoch_note"] = fmt::format("epoch counted over all stages (stage {}'s epoch {})", stages, last_fit.best_epoch);
    write_test_outputs(run, desc, te);
    log.info(fmt::format("test accuracy {:.4f} (stage {}'s best validation epoch {}, {:.4f}); outputs in {}",
                         te.accuracy, stages, last_fit.best_epoch, last_fit.best_val_acc, run.string()));
  } catch (const std::exception& e) {
    std::cerr << "finetune: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
