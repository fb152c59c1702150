// scratch_cnn: the study's CNN trained from random initialisation on 1x28x28 Fashion-MNIST,
// all layers, Adam, normalised with the training split's pixel mean and std. The test split is
// evaluated once, with the weights of the best validation epoch. Without recipe options this is the
// study's seed recipe; --recipe / --recipe-file train with another (augmentation, label smoothing,
// AdamW, schedules, MixUp/CutMix, early stopping, pair costs, distillation: experiments/lib/recipe.h).
//
//   build/bin/scratch_cnn [--epochs 10] [--lr 1e-3] [--out DIR] [--resume] [common options]
//   build/bin/scratch_cnn --recipe cosine --epochs 20 [--channels 24,48,128,256] [--teacher F] ...
//   mpirun -np 2 build/bin/scratch_cnn --distributed [--sync-bn] ...   data-parallel (docs/distributed.md)
#include <algorithm>
#include <iostream>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "dist/ddp.h"
#include "dist/sync_batch_norm.h"
#include "experiments/lib/recipe.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/study.h"
#include "models/io/sha256.h"
#include "models/scratch_cnn.h"
#include "nn/optim/adam.h"

using namespace dl;
using namespace dl::exp;

int main(int argc, char** argv) {
  CLI::App app{"scratch_cnn: the study's CNN trained from scratch on Fashion-MNIST"};
  CommonOptions o;
  o.add_to(app, true);
  int64_t epochs = 10;
  double lr = 1e-3;
  double dropout = 0.3;
  app.add_option("--epochs", epochs, "training epochs")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber);
  app.add_option("--dropout", dropout, "dropout before the linear head")->check(CLI::Range(0.0, 0.99));
  models::ScratchCnnConfig mc;
  app.add_option("--channels", mc.channels, "the four blocks' widths (default 48,96,256,512)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  RecipeOptions ro;
  ro.add_to(app);
  bool estimate = false;
  app.add_flag("--estimate", estimate, "time a few training batches and print the run's expected duration; write nothing");
  CLI11_PARSE(app, argc, argv);
  try {
    install_interrupt_handler();
    std::string estimate_note;
    if (estimate) {  // an earlier step of the study writes these; until then, time without them
      if (!ro.file.empty() && !std::filesystem::exists(ro.file)) {
        estimate_note += fmt::format(" ({} not written yet: timed with the seed recipe)", ro.file);
        ro.file.clear();
      }
      if (!ro.teacher.empty() && !std::filesystem::exists(ro.teacher)) {
        estimate_note += fmt::format(" ({} not written yet: timed without the teacher)", ro.teacher);
        ro.teacher.clear();
        ro.distill_alpha = ro.distill_temperature = -1;
      }
      manual_seed(o.seed);
    }
    // the recipe (and its file) is checked before the run folder is made
    const Recipe recipe = ro.resolve(lr, app.count("--lr") > 0);
    lr = recipe.lr;
    if (!recipe.teacher.empty() && !std::filesystem::is_regular_file(recipe.teacher))
      fail("--teacher: no teacher file at '{}' (the ensemble program writes it with --teacher-out)", recipe.teacher);
    auto run = estimate ? std::filesystem::path() : prepare_run("scratch_cnn", o);
    Logger log(run / "log.txt", o.is_main() && !estimate);
    Device device = parse_device(o.device);
    StudyData d = load_study_data(o);

    // the training split's pixel statistics (the images the model trains on), in double
    double sum = 0, sq = 0;
    const uint8_t* px = d.train_set.images.data_ptr<uint8_t>();
    int64_t per = d.train_set.images.numel() / d.train_set.size();
    for (int64_t i : d.train_idx)
      for (int64_t k = 0; k < per; ++k) {
        double v = px[i * per + k] / 255.0;
        sum += v;
        sq += v * v;
      }
    double n = static_cast<double>(d.train_idx.size() * per);
    double mean = sum / n, stdev = std::sqrt(std::max(sq / n - mean * mean, 1e-12));
    auto tf = data::transforms::Compose({data::transforms::ToFloat(), data::transforms::Normalize({mean}, {stdev})});

    data::LoaderOptions lo{.batch_size = o.batch_size, .shuffle = true, .drop_last = false, .seed = o.seed,
                           .num_workers = o.workers};
    data::LoaderOptions eo = lo;
    eo.shuffle = false;
    data::DataLoader train(d.train_set, d.train_idx, recipe.is_seed_recipe() ? tf : training_transform(recipe, mean, stdev),
                           o.shard(lo, true));
    data::DataLoader val(d.train_set, d.val_idx, tf, o.shard(eo, false));
    data::DataLoader test(d.test_set, d.test_idx, tf, eo);

    mc.dropout = dropout;
    auto model = std::make_shared<models::ScratchCnn>(mc);
    model->to(device);
    std::unique_ptr<dist::DistributedDataParallel> ddp;
    if (o.pg) {
      if (o.sync_bn) dist::convert_sync_batchnorm(*model, *o.pg);
      ddp = std::make_unique<dist::DistributedDataParallel>(model, *o.pg, dist::DdpOptions{.bucket_mb = o.bucket_mb});
    }
    int64_t params = model->num_parameters();
    std::unique_ptr<optim::Optimizer> opt = make_optimizer(recipe, model->parameters());
    std::unique_ptr<optim::LRScheduler> schedule = make_schedule(recipe, *opt, epochs * train.num_batches());
    std::optional<Teacher> teacher;
    if (!recipe.teacher.empty())
      teacher = load_teacher(recipe.teacher, d.train_set.size(), mc.num_classes, d.train_idx);

    ForwardFn forward = o.with_precision([&](const Tensor& x) { return (*model)(x.to(device)); }, device);
    TrainLossFn train_loss = recipe.is_seed_recipe() ? TrainLossFn{}
                                                     : recipe_loss(recipe, mc.num_classes, o.seed, teacher ? &*teacher : nullptr);
    if (estimate) {
      // 3 batches to warm up, then the median of 7 timed: forward, loss, backward and step, as fit() runs them
      model->train();
      std::vector<double> times;
      int64_t k = 0;
      for (auto& batch : train.epoch(0)) {
        auto t0 = std::chrono::steady_clock::now();
        Tensor logits;
        Tensor loss = train_loss ? train_loss(forward, batch, logits) : cross_entropy(forward(batch.images), batch.labels.to(device));
        opt->zero_grad();
        loss.backward();
        opt->step();
        if (k >= 3) times.push_back(seconds_since(t0));
        if (++k == 10) break;
      }
      if (times.empty()) times.push_back(0);
      std::sort(times.begin(), times.end());
      const int64_t timed = static_cast<int64_t>(times.size());
      const double per_batch = times[times.size() / 2];
      const double total = per_batch * static_cast<double>(train.num_batches()) * static_cast<double>(epochs) * 1.05;
      std::cout << fmt::format("scratch_cnn estimate: recipe {}{}, {} parameters: {:.3f} s per batch of {} (median of {} batches) "
                               "x {} batches x {} epochs, + 5% for validation ~ {:.0f} s\n",
                               recipe.name, estimate_note, model->num_parameters(), per_batch, o.batch_size, timed,
                               train.num_batches(), epochs, total);
      return 0;
    }
    nlohmann::json config = base_config("scratch_cnn", o, d);
    config["epochs"] = epochs;
    config["lr"] = lr;
    config["dropout"] = dropout;
    config["optimizer"] = opt->name();
    config["recipe"] = recipe.to_json();
    if (teacher) {  // which teacher, by content: a resume with another file is refused (config_differences)
      config["teacher_members"] = teacher->members;
      config["teacher_sha256"] = io::sha256_file(recipe.teacher);
    }
    config["normalization"] = {{"mean", mean}, {"std", stdev}, {"source", "training split pixels"}};
    config["model"] = {{"name", "ScratchCnn"}, {"channels", mc.channels}, {"params", params}};
    if (o.is_main()) write_json(run / "config.json", config);
    log.info(fmt::format("scratch_cnn: {} parameters (all trained); {} train / {} val / {} test images; "
                         "normalised with mean {:.4f}, std {:.4f}; run folder {}",
                         params, d.train_idx.size(), d.val_idx.size(), d.test_idx.size(), mean, stdev, run.string()));

    if (o.pg) log.info(fmt::format("distributed: {} ranks x {} images per batch, {} gradient buckets, {}", o.pg->world_size(),
                                   o.batch_size / o.pg->world_size(), ddp->bucket_layout().size(),
                                   o.sync_bn ? "SyncBatchNorm" : "per-rank batch norm (rank 0's running statistics)"));
    FitOptions fo{.epochs = epochs, .clip_grad_norm = o.clip_grad_norm, .skip_nonfinite = o.skip_nonfinite,
                  .resume = o.resume, .config = config, .pg = o.pg};
    fo.config.erase("started");
    fo.loss_scaling = o.loss_scaling();
    if (!recipe.is_seed_recipe()) {
      fo.train_loss = train_loss;
      fo.scheduler_per_batch = true;
      fo.early_stop_patience = recipe.early_stop_patience;
      log.info(fmt::format("recipe '{}': {}", recipe.name, recipe.summary()));
    }
    FitResult r = fit(*model, forward, *opt, schedule.get(), train, val, run, fo, log);
    if (r.interrupted) return 130;

    if (!o.is_main()) return 0;  // the test set is evaluated, and the run record written, by rank 0 alone
    load_best_weights(*model, run);
    auto t0 = std::chrono::steady_clock::now();
    EvalResult t = evaluate(*model, forward, test, 0, true, &log, "test");
    double test_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json desc = {
        {"model", "scratch_cnn"},
        {"display_name", recipe.is_seed_recipe() ? std::string("Scratch CNN") : fmt::format("Scratch CNN ({})", recipe.name)},
        {"architecture", fmt::format("Custom 4-block CNN ({}-{}-{}-{} channels)", mc.channels[0], mc.channels[1],
                                     mc.channels[2], mc.channels[3])},
        {"training_strategy", "all layers trained from random initialisation"},
        {"recipe", recipe.name},
        {"recipe_summary", recipe.summary()},
        {"epochs_run", static_cast<int64_t>(r.history.size())},
        {"stopped_early", r.stopped_early},
        {"learning_rate", lr},
        {"epochs", epochs},
        {"best_epoch", r.best_epoch},
        {"best_val_acc", r.best_val_acc},
        {"params_total", params},
        {"params_trained", model->num_parameters(true)},
        {"train_seconds", r.seconds},
        {"test_seconds", test_secs}};
    write_test_outputs(run, desc, t);
    log.info(fmt::format("test accuracy {:.4f} (best validation epoch {}, {:.4f}); outputs in {}", t.accuracy,
                         r.best_epoch, r.best_val_acc, run.string()));
  } catch (const std::exception& e) {
    if (o.pg) o.pg->abort(fmt::format("scratch_cnn: {}", e.what()));  // ends every rank, not only this one
    std::cerr << "scratch_cnn: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
