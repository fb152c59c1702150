#pragma once
// ONNX in both directions, on the ONNX project's own C++ protobuf types and checker (Debian
// libonnx-dev + libprotobuf-dev): no hand-written protobuf parser.
//
//   export_model(module, example, "m.onnx")   traces one forward pass in eval mode and writes a
//                                             model that onnx::checker accepts
//   auto m = load("m.onnx"); m->forward(x)    builds a runnable graph of the framework's ops; its
//                                             floating initializers are parameters (fine-tunable)
//
// docs/onnx.md lists the supported ops and opsets and what is refused, and why.
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace dl::onnx {

// ---- export -------------------------------------------------------------------------------------
struct ExportOptions {
  int64_t opset = 17;              // 13 through 17
  bool dynamic_batch = true;       // dim 0 of the input and output is the symbolic "batch"
  std::string input_name = "input";
  std::string output_name = "output";
};

// What export_model wrote and how it was checked.
struct ExportReport {
  int64_t nodes = 0, initializers = 0;
  int64_t checked_batch = 0;      // the batch size of the fresh input the file was checked on
  double max_abs_difference = 0;  // importer's output against the module's, on that input
  double max_abs_output = 0;      // the largest |output| of the module there
};

// Runs module.forward(example_input) once in eval mode (the module's mode is restored after),
// records every op, and writes the graph to `path` (atomically). Parameters and buffers become
// initializers named by the module tree ("layer1.0.conv1.weight"); nodes are named after the
// module that ran them. An op with no ONNX form is a dl::Error naming the op and the module.
// The written model is checked with onnx::checker and ONNX shape inference, then read back by
// load_from_bytes and run on a fresh random input (of another batch size when the batch is
// dynamic) next to the module: a value the tracer could not see (a raw ops:: call, an integer
// result, x.detach() inside forward) would have entered the graph as a constant, and a size
// fixed to the example's batch would not fit; either is an error (outputs must agree to 1e-4 of
// the largest one), and no file is written.
ExportReport export_model(nn::Module& module, const Tensor& example_input, const std::string& path,
                  const ExportOptions& options = {});

// ---- import -------------------------------------------------------------------------------------
// A model read from an ONNX file: an nn::Module whose forward runs the graph with the framework's
// ops, so it trains, moves between devices and saves like any other module. Floating initializers
// are its parameters, named as in the file when the name is a dotted path of identifiers (so a
// model exported here imports with the native model's state_dict keys); the running statistics of
// BatchNormalization are buffers; integer initializers (shapes, indices) are constants.
class OnnxModel : public nn::Module {
 public:
  struct Impl;
  explicit OnnxModel(std::unique_ptr<Impl> impl);
  ~OnnxModel() override;

  Tensor forward(const Tensor& x) override;                    // one input, the first output
  // A loaded model is in eval mode: BatchNormalization uses its running statistics (ONNX's
  // inference semantics). train() makes it normalise with the batch's statistics and update the
  // running ones (momentum from the node, as PyTorch's train mode); Dropout stays the identity.
  void train(bool on = true) override;
  std::vector<Tensor> run(const std::vector<Tensor>& inputs);  // the graph's inputs in order; every output
  const std::vector<std::string>& input_names() const;
  const std::vector<std::string>& output_names() const;
  int64_t opset() const;  // the default domain's opset version
  // The declared shape of graph input i: -1 for a symbolic or unknown dim; empty when undeclared.
  std::vector<int64_t> input_shape(size_t i = 0) const;

  // The nodes in run order, for inspection (and for locating layers by shape, onnx/resnet.h).
  struct NodeInfo {
    std::string op_type, name;
    std::vector<std::string> inputs, outputs;
  };
  const std::vector<NodeInfo>& nodes() const;
  // An initializer's current value (the live parameter for floating ones) by its ONNX name;
  // undefined when there is none of that name.
  Tensor initializer(const std::string& onnx_name) const;

 private:
  std::unique_ptr<Impl> impl_;
};

// Reads, validates and builds. Everything is checked before anything runs: an op, attribute or
// data type that is not supported, a truncated or non-ONNX file, huge dims, external data outside
// the model's folder, a graph with a cycle or an undefined value is a dl::Error that names it.
std::shared_ptr<OnnxModel> load(const std::string& path);
// The same from bytes in memory; `base_dir` is where external data files may live ("" = none allowed).
std::shared_ptr<OnnxModel> load_from_bytes(const std::string& bytes, const std::string& base_dir = "");

// ---- TensorProto files (onnx_run's inputs and outputs) ------------------------------------------
// A serialized onnx.TensorProto holding one tensor (float, double, int64 or uint8), as ONNX's own
// test data sets store them (input_0.pb, output_0.pb).
Tensor read_tensor_proto(const std::string& path, std::string* name = nullptr);
void write_tensor_proto(const std::string& path, const Tensor& t, const std::string& name);

}  // namespace dl::onnx
