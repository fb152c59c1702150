#include "onnx/proto_util.h"

#include "onnx/onnx.h"

#include "data/file_util.h"
#include "tensor/ops.h"

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

void tensor_to_proto(const Tensor& t, const std::string& name, ::onnx::TensorProto* out) {
  Tensor c = ops::contiguous(ops::to_device(t.detach(), kCPU));
  out->set_name(name);
  out->set_data_type(onnx_elem_type(c.dtype()));
  for (int64_t d : c.sizes()) out->add_dims(d);
  out->set_raw_data(static_cast<const char*>(c.raw_data()), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
}

void write_model_atomically(const ::onnx::ModelProto& model, const std::string& path) {
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    fail("onnx: could not serialise the model for {} (is it over protobuf's 2 GiB limit?)", path);
  data::write_file_atomic(path, bytes);
}

void write_tensor_proto(const std::string& path, const Tensor& t, const std::string& name) {
  ::onnx::TensorProto proto;
  tensor_to_proto(t, name, &proto);
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) fail("write_tensor_proto: could not serialise '{}' for {}", name, path);
  data::write_file_atomic(path, bytes);
}

}  // namespace dl::onnx
