// export_onnx: the trained model of a run folder as an ONNX file that other runtimes can serve.
//
//   build/bin/export_onnx RUN_DIR [--output FILE] [--opset 17]
//
// RUN_DIR is a scratch_cnn, baseline_transfer or lr_tuning run (config.json + best.ckpt; a ResNet18
// run also needs the backbone weights it was trained on). The model takes the preprocessed image
// (N, C, H, W) float32, N dynamic, and returns the logits (N, 10); preprocessing (normalisation,
// resizing) stays outside the model, as the run's config.json records it. The written graph is
// checked with ONNX's checker, then run by this framework's importer on a test input and compared
// with the native model before the command reports success.
#include <iostream>

#include <CLI/CLI.hpp>

#include "autograd/node.h"
#include "experiments/lib/run_model.h"
#include "onnx/onnx.h"

using namespace dl;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"export_onnx: a run folder's trained model as an ONNX file"};
  std::string run, output;
  int64_t opset = 17;
  app.add_option("run", run, "run folder (scratch_cnn, baseline_transfer or lr_tuning)")->required();
  app.add_option("--output", output, "ONNX file to write (default: RUN/model.onnx)");
  app.add_option("--opset", opset, "ONNX opset, 13 through 17")->check(CLI::Range(13, 17));
  CLI11_PARSE(app, argc, argv);
  try {
    if (output.empty()) output = (fs::path(run) / "model.onnx").string();
    exp::RunModel rm = exp::load_run_model(run);
    Shape shape = rm.input_shape;
    shape.insert(shape.begin(), 2);
    Generator gen(0);
    Tensor example = randn(shape, {}, &gen);
    onnx::export_model(*rm.model, example, output, {.opset = opset});
    // read back with our importer and compare with the native model on the example
    auto imported = onnx::load(output);
    Tensor want, got;
    {
      NoGradGuard ng;
      want = (*rm.model)(example);
      got = imported->forward(example);
    }
    double diff = (got - want).abs().max().item<double>(), scale = want.abs().max().item<double>();
    if (!(diff <= 1e-4 * std::max(1.0, scale)))
      fail("the exported graph, run again by the importer, differs from the model by {} (largest logit {})", diff, scale);
    std::cout << fmt::format("wrote {} ({} bytes): {} as ONNX opset {}, input (batch, {}, {}, {}) float32, output "
                             "(batch, {}); re-imported and checked: largest difference {:.2e}\n",
                             output, fs::file_size(output), rm.key, opset, rm.input_shape[0], rm.input_shape[1],
                             rm.input_shape[2], want.size(1), diff);
  } catch (const std::exception& e) {
    std::cerr << "export_onnx: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
