// pick_recipe: the recipe ablation's winner, chosen on validation accuracy (never on the test set).
// Reads R/recipes/<row>/ for every row of the ablation (experiments/lib/recipe.h), takes the row
// with the highest best-epoch validation accuracy (ties: the earlier, simpler row) among the rows
// whose runs finished, and writes R/recipes/best.json: the row, the selection rule, every row's
// validation accuracy and the winning run's recipe exactly as its config.json recorded it (the
// file scratch_cnn --recipe-file reads).
//
//   build/bin/pick_recipe --results R
#include <iostream>

#include "experiments/lib/recipe.h"
#include "experiments/lib/run_model.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"pick_recipe: the ablation row with the best validation accuracy, as a recipe file"};
  std::string results;
  bool estimate = false;
  app.add_option("--results", results, "the results folder")->required();
  app.add_flag("--estimate", estimate, "say how long it takes (it reads a few files), write nothing");
  CLI11_PARSE(app, argc, argv);
  if (estimate) {
    std::cout << "pick_recipe estimate: reads the ablation's records ~ 0 s\n";
    return 0;
  }
  try {
    const fs::path dir = fs::path(results) / "recipes";
    nlohmann::json rows = nlohmann::json::array();
    std::string best;
    double best_val = -1;
    nlohmann::json best_recipe;
    for (const auto& row : ablation_rows()) {
      const fs::path run = dir / row.name;
      std::string why = run_not_usable(run);
      if (!why.empty()) {
        rows.push_back({{"row", row.name}, {"status", why}});
        std::cout << fmt::format("{}: {}, left out\n", row.name, why);
        continue;
      }
      nlohmann::json m = read_json(run / "metrics.json"), c = read_json(run / "config.json");
      double v = m.at("best_val_acc").get<double>();
      rows.push_back({{"row", row.name}, {"best_val_acc", v}, {"best_epoch", m.value("best_epoch", 0)}});
      std::cout << fmt::format("{}: best validation accuracy {:.4f}\n", row.name, v);
      if (v > best_val) {
        best_val = v;
        best = row.name;
        best_recipe = c.at("recipe");
      }
    }
    if (best.empty()) fail("no row of the ablation finished in {}; nothing to choose from", dir.string());
    Recipe r = Recipe::from_json(best_recipe);  // checks it
    write_json(dir / "best.json", {{"row", best},
                                   {"best_val_acc", best_val},
                                   {"selection", "the highest best-epoch validation accuracy; ties go to the earlier row"},
                                   {"rows", rows},
                                   {"recipe", r.to_json()}});
    std::cout << fmt::format("best recipe: {} (validation accuracy {:.4f}): {}\nwritten to {}\n", best, best_val, r.summary(),
                             (dir / "best.json").string());
  } catch (const std::exception& e) {
    std::cerr << "pick_recipe: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
