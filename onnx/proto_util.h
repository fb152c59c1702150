#pragma once
// What the exporter adds to the importer's TensorProto helpers (onnx/import_internal.h):
// dtype codes and writing a model file. Internal to onnx/.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <string>

#include "onnx/import_internal.h"  // detail::tensor_to_proto
#include "tensor/tensor.h"

namespace dl::onnx {

// ONNX's TensorProto.DataType code for a framework dtype (FLOAT, DOUBLE, INT64, UINT8).
int32_t onnx_elem_type(DType dt);
// How far `got` is from `want`: the largest absolute difference, and the largest |want| it is judged
// against; close() is max|got - want| <= tol * max(1, max|want|) (shapes must be equal).
struct OutputDifference {
  double max_abs = 0, scale = 0;
  bool close(double tol) const { return max_abs <= tol * std::max(1.0, scale); }
};
OutputDifference output_difference(const Tensor& got, const Tensor& want);

// Serialises and writes atomically (temporary file, then rename); a failure names the path.
void write_model_atomically(const ::onnx::ModelProto& model, const std::string& path);

}  // namespace dl::onnx
