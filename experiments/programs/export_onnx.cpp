// export_onnx: the trained model of a run folder as an ONNX file that other runtimes can serve.
//
//   build/bin/export_onnx RUN_DIR [--output FILE] [--opset 17]
//
// RUN_DIR is a scratch_cnn, baseline_transfer or lr_tuning run (config.json + best.ckpt; a ResNet18
// run also needs the backbone weights it was trained on). The model takes the preprocessed image
// (N, C, H, W) float32, N dynamic, and returns the logits (N, 10); preprocessing (normalisation,
// resizing) stays outside the model, as the run's config.json records it. The written graph is
// checked with ONNX's checker, then run by this framework's importer on a fresh input of another
// batch size and compared with the native model before it is written (onnx::export_model).
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
    // export_model reads the graph back and checks it on a fresh input of another batch size
    onnx::ExportReport r = onnx::export_model(*rm.model, example, output, {.opset = opset});
    std::cout << fmt::format("wrote {} ({} bytes, {} nodes, {} initializers): {} as ONNX opset {}, input (batch, {}, {}, "
                             "{}) float32; re-imported and run on a fresh batch of {}: largest difference {:.2e} "
                             "(largest logit {:.3g})\n",
                             output, fs::file_size(output), r.nodes, r.initializers, rm.key, opset, rm.input_shape[0],
                             rm.input_shape[1], rm.input_shape[2], r.checked_batch, r.max_abs_difference,
                             r.max_abs_output);
  } catch (const std::exception& e) {
    std::cerr << "export_onnx: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
