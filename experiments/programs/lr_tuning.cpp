// lr_tuning: the baseline's head trained once per learning rate of a sweep, on the same cached
// features; the rate is chosen by validation accuracy and the test split is evaluated once, for
// the chosen rate. Writes sweep.csv (one row per rate), one sub-folder per rate (lr-<rate>/ with
// its history and checkpoints), and at the top level the chosen model's history.csv, metrics.json,
// confusion.csv and predictions.csv, like any other model's run folder.
//
//   build/bin/lr_tuning [--lrs 1e-4,3e-4,1e-3,3e-3,1e-2,3e-2] [--epochs 10] [transfer and common options]
#include <iostream>

#include "experiments/lib/transfer.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"lr_tuning: learning-rate sweep for the ResNet18 linear probe, chosen on validation accuracy"};
  CommonOptions o;
  TransferOptions t;
  o.add_to(app);
  t.add_to(app);
  int64_t epochs = 10;
  std::vector<double> lrs{1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2};
  app.add_option("--epochs", epochs, "head training epochs per rate")->check(CLI::PositiveNumber);
  app.add_option("--lrs", lrs, "learning rates to try")->delimiter(',')->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    require_weights(t.weights);
    install_interrupt_handler();
    auto run = prepare_run("lr_tuning", o);
    Logger log(run / "log.txt");
    StudyData d = load_study_data(o);
    FeatureSet f = features_for(t, d, o, log);
    nlohmann::json config = transfer_config("lr_tuning", o, d, t, f, epochs);
    config["lrs"] = lrs;
    config["selection"] = "best validation accuracy over the epochs of each rate; ties go to the smaller rate";
    write_json(run / "config.json", config);

    std::string sweep = "lr,best_val_acc,best_epoch,final_val_acc,final_train_loss,seconds\n";
    size_t best = 0;
    std::vector<FitResult> results;
    for (size_t i = 0; i < lrs.size(); ++i) {
      fs::path sub = run / fmt::format("lr-{:g}", lrs[i]);
      nlohmann::json c = config;
      c["lr"] = lrs[i];
      log.info(fmt::format("learning rate {:g} ({}/{})", lrs[i], i + 1, lrs.size()));
      HeadResult h = train_head(f, lrs[i], epochs, o, sub, c, log, false);
      if (h.fit.interrupted) return 130;
      const auto& last = h.fit.history.back();
      sweep += fmt::format("{:g},{:.6f},{},{:.6f},{:.6f},{:.3f}\n", lrs[i], h.fit.best_val_acc, h.fit.best_epoch,
                           last.val_acc, last.train_loss, h.fit.seconds);
      results.push_back(h.fit);
      if (h.fit.best_val_acc > results[best].best_val_acc) best = i;
    }
    write_text_atomic(run / "sweep.csv", sweep);
    double chosen = lrs[best];
    log.info(fmt::format("chosen learning rate {:g} (best validation accuracy {:.4f})", chosen, results[best].best_val_acc));

    // the chosen rate's head, evaluated once on the test split
    fs::path sub = run / fmt::format("lr-{:g}", chosen);
    nlohmann::json c = config;
    c["lr"] = chosen;
    CommonOptions resume = o;
    resume.resume = true;  // the sub-run is complete: this reloads it, trains nothing, then tests
    HeadResult h = train_head(f, chosen, epochs, resume, sub, c, log, true);
    fs::copy_file(sub / "history.csv", run / "history.csv", fs::copy_options::overwrite_existing);
    fs::copy_file(sub / "best.ckpt", run / "best.ckpt", fs::copy_options::overwrite_existing);
    fs::copy_file(sub / "last.ckpt", run / "last.ckpt", fs::copy_options::overwrite_existing);
    nlohmann::json desc = transfer_description("lr_tuning", "Tuned ResNet18", t, f, chosen, epochs, results[best]);
    desc["sweep"] = nlohmann::json::array();
    for (size_t i = 0; i < lrs.size(); ++i)
      desc["sweep"].push_back({{"lr", lrs[i]}, {"best_val_acc", results[i].best_val_acc}, {"best_epoch", results[i].best_epoch}});
    write_test_outputs(run, desc, h.test);

    std::string table = "\n| learning rate | best val accuracy | best epoch |\n|---|---|---|\n";
    for (size_t i = 0; i < lrs.size(); ++i)
      table += fmt::format("| {:g}{} | {:.4f} | {} |\n", lrs[i], i == best ? " (chosen)" : "", results[i].best_val_acc,
                           results[i].best_epoch);
    log.info(table);
    log.info(fmt::format("test accuracy at lr {:g}: {:.4f}; outputs in {}", chosen, h.test.accuracy, run.string()));
  } catch (const std::exception& e) {
    std::cerr << "lr_tuning: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
