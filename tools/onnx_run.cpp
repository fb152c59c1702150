// onnx_run: runs an ONNX model (dl::onnx::load) on inputs stored as serialized onnx.TensorProto
// files and writes each output as <output_name>.pb (a TensorProto) into --output-dir.
//
//   onnx_run model.onnx --input input=x.pb --output-dir out/
//   onnx_run model.onnx a.pb b.pb --output-dir out/                   (matched to the graph's
//   onnx_run model.onnx --input a.pb --input b.pb --output-dir out/    inputs in order)
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/node.h"
#include "onnx/onnx.h"

namespace {

// A file name from an output name: letters, digits, '-', '_' and '.' kept, others '_'; never
// empty, never "." or "..", never a hidden file.
std::string file_name_for(const std::string& name) {
  std::string s;
  for (char c : name) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  if (s.empty() || s[0] == '.') s = "_" + s;
  if (s.size() > 200) s = s.substr(0, 200);
  return s;
}

int run(int argc, char** argv) {
  CLI::App app{"onnx_run: runs an ONNX model on TensorProto inputs and writes its outputs as TensorProto files"};
  std::string model_path, out_dir;
  std::vector<std::string> input_args;
  std::vector<std::string> positional_inputs;
  app.add_option("model", model_path, "the .onnx file")->required();
  app.add_option("inputs", positional_inputs, "input files (NAME=FILE.pb or FILE.pb), like --input");
  app.add_option("--input,-i", input_args,
                 "NAME=FILE.pb, or FILE.pb (matched to the graph's inputs in order); once per input");
  app.add_option("--output-dir,-o", out_dir, "where <output_name>.pb files are written")->required();
  CLI11_PARSE(app, argc, argv);
  input_args.insert(input_args.begin(), positional_inputs.begin(), positional_inputs.end());

  auto model = dl::onnx::load(model_path);
  const auto& names = model->input_names();
  std::map<std::string, dl::Tensor> by_name;
  size_t positional = 0;
  for (const std::string& arg : input_args) {
    const size_t eq = arg.find('=');
    std::string name, file;
    if (eq == std::string::npos) {
      if (positional >= names.size())
        dl::fail("onnx_run: more inputs than the model's {} ({})", names.size(), fmt::join(names, ", "));
      name = names[positional++];
      file = arg;
    } else {
      name = arg.substr(0, eq);
      file = arg.substr(eq + 1);
      if (std::find(names.begin(), names.end(), name) == names.end())
        dl::fail("onnx_run: the model has no input '{}' (its inputs: {})", name, fmt::join(names, ", "));
    }
    if (by_name.count(name)) dl::fail("onnx_run: input '{}' is given twice", name);
    by_name[name] = dl::onnx::read_tensor_proto(file);
  }
  std::vector<dl::Tensor> inputs;
  for (const std::string& n : names) {
    auto it = by_name.find(n);
    if (it == by_name.end()) dl::fail("onnx_run: input '{}' is missing (give --input {}=FILE.pb)", n, n);
    inputs.push_back(it->second);
  }
  model->eval();
  std::vector<dl::Tensor> outputs;
  {
    dl::NoGradGuard ng;
    outputs = model->run(inputs);
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) dl::fail("onnx_run: cannot create '{}': {}", out_dir, ec.message());
  std::map<std::string, std::string> used;
  for (size_t k = 0; k < outputs.size(); ++k) {
    const std::string& name = model->output_names()[k];
    std::string file = file_name_for(name);
    if (used.count(file)) file = fmt::format("{}_{}", file, k);
    used[file] = name;
    const std::string path = (std::filesystem::path(out_dir) / (file + ".pb")).string();
    dl::onnx::write_tensor_proto(path, outputs[k], name);
    std::printf("%s: %s -> %s\n", name.c_str(), dl::shape_str(outputs[k].sizes()).c_str(), path.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
