#pragma once
// What the exporter, the importer and the TensorProto files share: dtype codes, Tensor to
// TensorProto, and writing a model file. Internal to onnx/.
#include <onnx/onnx_pb.h>

#include <string>

#include "tensor/tensor.h"

namespace dl::onnx {

// ONNX's TensorProto.DataType code for a framework dtype (FLOAT, DOUBLE, INT64, UINT8).
int32_t onnx_elem_type(DType dt);
// Copies `t` (any device, any strides) into `out` as raw little-endian data named `name`.
void tensor_to_proto(const Tensor& t, const std::string& name, ::onnx::TensorProto* out);
// Serialises and writes atomically (temporary file, then rename); a failure names the path.
void write_model_atomically(const ::onnx::ModelProto& model, const std::string& path);

}  // namespace dl::onnx
