#pragma once
// Weight files as the framework sees them: named dl::Tensors. Reads torchvision/PyTorch `.pth`
// (zip format) and safetensors through the parsers in models/io/, writes safetensors (every dtype,
// bfloat16 and float16 included).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace dl {

using TensorDict = std::vector<std::pair<std::string, Tensor>>;  // ordered, as in the file

// Loads `.pth` / `.pt` (torch.save zip format) or `.safetensors`, chosen by content (zip magic,
// else safetensors), so a renamed file still loads. Floating tensors become float32 (float64 stays
// float64 when keep_float64; bfloat16 and float16 are converted exactly), integers int64, as a
// float32 model's load_state_dict wants them. A missing file is a dl::Error that names it.
TensorDict load_weights(const std::string& path, bool keep_float64 = false);

// Formats that a higher layer reads (onnx/ registers ".onnx": dl::onnx::register_weights_format):
// load_weights hands a file with that extension to `read`, then converts dtypes as for the others.
using WeightsReader = TensorDict (*)(const std::string& path);
void register_weights_reader(const std::string& extension, WeightsReader read);

// Writes a safetensors file atomically. metadata goes into "__metadata__".
void save_safetensors(const std::string& path, const TensorDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Reads a safetensors file. keep_dtypes: F64, BF16 and F16 tensors come back as float64, bfloat16
// and float16 (a save/load round trip is exact); otherwise every float becomes float32 as in
// load_weights. Integers become int64 (U8 stays uint8) either way.
TensorDict load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr,
                            bool keep_dtypes = true);

// Finds a tensor by name; nullptr when absent.
const Tensor* find_tensor(const TensorDict& d, const std::string& name);

}  // namespace dl
