#include "onnx/proto_util.h"

#include "data/file_util.h"

namespace dl::onnx {

int32_t onnx_elem_type(DType dt) {
  switch (dt) {
    case DType::Float32: return ::onnx::TensorProto::FLOAT;
    case DType::Float64: return ::onnx::TensorProto::DOUBLE;
    case DType::Int64: return ::onnx::TensorProto::INT64;
    case DType::UInt8: return ::onnx::TensorProto::UINT8;
  }
  fail("onnx: dtype {} has no ONNX code", dtype_name(dt));
}

void write_model_atomically(const ::onnx::ModelProto& model, const std::string& path) {
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    fail("onnx: could not serialise the model for {} (is it over protobuf's 2 GiB limit?)", path);
  data::write_file_atomic(path, bytes);
}

}  // namespace dl::onnx
