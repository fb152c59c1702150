// baseline_transfer: ImageNet-pretrained ResNet18, backbone frozen, a new 512->10 head trained
// with Adam at lr 1e-3 for 10 epochs on features computed once and cached (see
// experiments/lib/transfer.h for why that is exact here).
//
//   build/bin/baseline_transfer [--weights weights/resnet18-f37072fd.pth] [--image-size 224]
//                               [--epochs 10] [--lr 1e-3] [--out DIR] [common options]
#include <iostream>

#include "experiments/lib/transfer.h"

using namespace dl;
using namespace dl::exp;

int main(int argc, char** argv) {
  CLI::App app{"baseline_transfer: linear probe of an ImageNet-pretrained ResNet18 on Fashion-MNIST"};
  CommonOptions o;
  TransferOptions t;
  o.add_to(app);
  t.add_to(app);
  int64_t epochs = 10;
  double lr = 1e-3;
  app.add_option("--epochs", epochs, "head training epochs")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    require_weights(t.weights);
    install_interrupt_handler();
    auto run = prepare_run("baseline_transfer", o);
    Logger log(run / "log.txt");
    StudyData d = load_study_data(o);
    FeatureSet f = features_for(t, d, o, log);
    nlohmann::json config = transfer_config("baseline_transfer", o, d, t, f, epochs);
    config["lr"] = lr;
    write_json(run / "config.json", config);
    HeadResult h = train_head(f, lr, epochs, o, run, config, log, true);
    if (h.fit.interrupted) return 130;
    write_test_outputs(run, transfer_description("baseline_transfer", "Baseline ResNet18", t, f, lr, epochs, h.fit), h.test);
    log.info(fmt::format("test accuracy {:.4f} (best validation epoch {}); outputs in {}", h.test.accuracy,
                         h.fit.best_epoch, run.string()));
  } catch (const std::exception& e) {
    std::cerr << "baseline_transfer: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
