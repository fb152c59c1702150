#pragma once
// ONNX files as weight files: the state_dict of a ResNet18 or scratch CNN held in an ONNX model,
// so every program that takes --weights takes an .onnx file too (models/weights.h's load_weights,
// once register_weights_format() has run).
#include <string>

#include "models/weights.h"

namespace dl::onnx {

// Two forms are understood:
//  - initializers named like the state_dict ("layer1.0.conv1.weight"): export_model's files, or
//    torch.onnx.export with the batch norms kept. Every floating initializer is returned by name.
//  - torch.onnx.export's default eval export of a torchvision ResNet18, where each batch norm is
//    folded into the conv before it (which gains a bias). The 20 convs are matched in graph order to
//    torchvision's, each by its weight's shape; each batch norm becomes the identity plus the folded
//    bias (weight 1, bias b, running mean 0, running var 1 - eps); the classifier head is the Gemm
//    (or MatMul) whose weight is (classes, 512).
// Either way the result is checked: a ResNet18 built from it must give the ONNX graph's logits
// (within 1e-4 relative) on a random input, or the file is refused with what differed.
TensorDict weights_from_onnx(const std::string& path);

// Makes load_weights (and so every --weights option) read ".onnx" files. Idempotent.
void register_weights_format();

}  // namespace dl::onnx
