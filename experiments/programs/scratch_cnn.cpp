// scratch_cnn: the study's CNN trained from random initialisation on 1x28x28 Fashion-MNIST,
// all layers, Adam, normalised with the training split's pixel mean and std. The test split is
// evaluated once, with the weights of the best validation epoch.
//
//   build/bin/scratch_cnn [--epochs 10] [--lr 1e-3] [--out DIR] [--resume] [common options]
//   mpirun -np 2 build/bin/scratch_cnn --distributed [--sync-bn] ...   data-parallel (docs/distributed.md)
#include <iostream>

#include "autograd/node.h"
#include "dist/ddp.h"
#include "dist/sync_batch_norm.h"
#include "experiments/lib/study.h"
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
  CLI11_PARSE(app, argc, argv);
  try {
    install_interrupt_handler();
    auto run = prepare_run("scratch_cnn", o);
    Logger log(run / "log.txt", o.is_main());
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
    data::DataLoader train(d.train_set, d.train_idx, tf, o.shard(lo, true));
    data::DataLoader val(d.train_set, d.val_idx, tf, o.shard(eo, false));
    data::DataLoader test(d.test_set, d.test_idx, tf, eo);

    models::ScratchCnnConfig mc;
    mc.dropout = dropout;
    auto model = std::make_shared<models::ScratchCnn>(mc);
    model->to(device);
    std::unique_ptr<dist::DistributedDataParallel> ddp;
    if (o.pg) {
      if (o.sync_bn) dist::convert_sync_batchnorm(*model, *o.pg);
      ddp = std::make_unique<dist::DistributedDataParallel>(model, *o.pg, dist::DdpOptions{.bucket_mb = o.bucket_mb});
    }
    int64_t params = model->num_parameters();
    optim::Adam opt(model->parameters(), {.lr = lr});

    nlohmann::json config = base_config("scratch_cnn", o, d);
    config["epochs"] = epochs;
    config["lr"] = lr;
    config["dropout"] = dropout;
    config["optimizer"] = "Adam";
    config["normalization"] = {{"mean", mean}, {"std", stdev}, {"source", "training split pixels"}};
    config["model"] = {{"name", "ScratchCnn"}, {"channels", mc.channels}, {"params", params}};
    if (o.is_main()) write_json(run / "config.json", config);
    log.info(fmt::format("scratch_cnn: {} parameters (all trained); {} train / {} val / {} test images; "
                         "normalised with mean {:.4f}, std {:.4f}; run folder {}",
                         params, d.train_idx.size(), d.val_idx.size(), d.test_idx.size(), mean, stdev, run.string()));

    if (o.pg) log.info(fmt::format("distributed: {} ranks x {} images per batch, {} gradient buckets, {}", o.pg->world_size(),
                                   o.batch_size / o.pg->world_size(), ddp->bucket_layout().size(),
                                   o.sync_bn ? "SyncBatchNorm" : "per-rank batch norm (rank 0's running statistics)"));
    ForwardFn forward = o.with_precision([&](const Tensor& x) { return (*model)(x.to(device)); }, device);
    FitOptions fo{.epochs = epochs, .clip_grad_norm = o.clip_grad_norm, .skip_nonfinite = o.skip_nonfinite,
                  .resume = o.resume, .config = config, .pg = o.pg};
    fo.config.erase("started");
    fo.loss_scaling = o.loss_scaling();
    FitResult r = fit(*model, forward, opt, nullptr, train, val, run, fo, log);
    if (r.interrupted) return 130;

    if (!o.is_main()) return 0;  // the test set is evaluated, and the run record written, by rank 0 alone
    load_best_weights(*model, run);
    auto t0 = std::chrono::steady_clock::now();
    EvalResult t = evaluate(*model, forward, test, 0, true, &log, "test");
    double test_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json desc = {
        {"model", "scratch_cnn"},
        {"display_name", "Scratch CNN"},
        {"architecture", fmt::format("Custom 4-block CNN ({}-{}-{}-{} channels)", mc.channels[0], mc.channels[1],
                                     mc.channels[2], mc.channels[3])},
        {"training_strategy", "all layers trained from random initialisation"},
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
